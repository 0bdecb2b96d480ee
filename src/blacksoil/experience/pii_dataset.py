"""Deterministic generator of the labelled PII evaluation set (agent transcripts and tool outputs).

Run `python -m blacksoil.experience.pii_dataset` to rewrite data/pii_eval.json; the file is checked in.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

SEED = 20261127
DATASET_PATH = Path(__file__).parent / "data" / "pii_eval.json"

# Labels the set uses; the anonymizer must find all of them.
ENTITY_TYPES = (
    "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN",
    "CRYPTO", "API_KEY", "EMPLOYEE_ID", "SERIAL_NUMBER",
)

FIRST = ["anna", "li", "marco", "priya", "jonas", "fatima", "tom", "sofia", "kenji", "olga", "diego", "mei"]
LAST = ["schmidt", "wang", "rossi", "patel", "berg", "haddad", "miller", "garcia", "sato", "ivanova", "lopez"]
DOMAINS = ["acmerobotics.de", "outlook.com", "gmail.com", "contoso.co.uk", "factory-ops.io", "yahoo.fr",
           "mueller-gmbh.de", "northwind.com", "plant-services.net", "web.de"]


def _digits(r: random.Random, n: int) -> str:
    return "".join(r.choice(string.digits) for _ in range(n))


def _alnum(r: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(r.choice(alphabet) for _ in range(n))


def email(r: random.Random) -> str:
    sep = r.choice([".", "_", ""])
    user = f"{r.choice(FIRST)}{sep}{r.choice(LAST)}" + r.choice(["", "", str(r.randint(1, 99))])
    return f"{user}@{r.choice(DOMAINS)}"


def phone(r: random.Random) -> str:
    area = r.choice(["212", "415", "617", "312", "206", "646", "773", "469"])
    exch = f"{r.randint(2, 9)}{_digits(r, 2)}"
    line = _digits(r, 4)
    style = r.randrange(7)
    if style == 0:
        return f"+1 {area}-{exch}-{line}"
    if style == 1:
        return f"({area}) {exch}-{line}"
    if style == 2:
        return f"{area}.{exch}.{line}"
    if style == 3:
        return f"+44 20 7{_digits(r, 3)} {_digits(r, 4)}"
    if style == 4:
        return f"+49 89 {_digits(r, 4)} {_digits(r, 4)}"
    if style == 5:
        return f"+49 151 {r.randint(1, 9)}{_digits(r, 7)}"
    return f"+33 6 {_digits(r, 2)} {_digits(r, 2)} {_digits(r, 2)} {_digits(r, 2)}"


def _luhn_complete(prefix: str, length: int, r: random.Random) -> str:
    body = prefix + _digits(r, length - len(prefix) - 1)
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return body + str((10 - total % 10) % 10)


def credit_card(r: random.Random) -> str:
    kind = r.randrange(3)
    if kind == 0:
        num = _luhn_complete("4", 16, r)
    elif kind == 1:
        num = _luhn_complete(f"5{r.randint(1, 5)}", 16, r)
    else:
        num = _luhn_complete(r.choice(["34", "37"]), 15, r)
        return r.choice([num, f"{num[:4]} {num[4:10]} {num[10:]}"])
    sep = r.choice(["", " ", "-"])
    return sep.join(num[i : i + 4] for i in range(0, 16, 4))


def _iban_check(country: str, bban: str) -> str:
    rearranged = bban + country + "00"
    numeric = "".join(str(int(c, 36)) for c in rearranged)
    return f"{98 - int(numeric) % 97:02d}"


def iban(r: random.Random) -> str:
    country = r.choice(["DE", "GB", "FR", "NL"])
    if country == "DE":
        bban = _digits(r, 18)
    elif country == "GB":
        bban = r.choice(["NWBK", "BARC", "HSBC", "LOYD"]) + _digits(r, 14)
    elif country == "FR":
        bban = _digits(r, 10) + _alnum(r, 11, string.ascii_uppercase + string.digits) + _digits(r, 2)
    else:
        bban = r.choice(["ABNA", "INGB", "RABO"]) + _digits(r, 10)
    code = country + _iban_check(country, bban) + bban
    if r.random() < 0.5:
        return " ".join(code[i : i + 4] for i in range(0, len(code), 4))
    return code


def ip(r: random.Random) -> str:
    kind = r.randrange(4)
    if kind == 0:
        return f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
    if kind == 1:
        return f"192.168.{r.randint(0, 255)}.{r.randint(1, 254)}"
    if kind == 2:
        return f"{r.randint(11, 223)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
    groups = [f"{r.randint(0, 0xFFFF):x}" for _ in range(4)]
    return "2001:db8:" + ":".join(groups) + "::" + f"{r.randint(1, 0xFFFF):x}"


def ssn(r: random.Random) -> str:
    area = r.choice([r.randint(1, 665), r.randint(667, 899)])
    return f"{area:03d}-{r.randint(1, 99):02d}-{r.randint(1, 9999):04d}"


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def crypto(r: random.Random) -> str:
    payload = bytes([0]) + bytes(r.randrange(256) for _ in range(20))
    check = hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(payload + check, "big")
    out = ""
    while n:
        n, rem = divmod(n, 58)
        out = _B58[rem] + out
    return "1" + out  # one leading zero byte -> one leading "1"


def api_key(r: random.Random) -> str:
    kind = r.randrange(6)
    if kind == 0:
        return "sk-" + _alnum(r, 48)
    if kind == 1:
        return "sk-proj-" + _alnum(r, 56, string.ascii_letters + string.digits + "_-")
    if kind == 2:
        return "AKIA" + _alnum(r, 16, string.ascii_uppercase + string.digits)
    if kind == 3:
        return "ghp_" + _alnum(r, 36)
    if kind == 4:
        return f"xoxb-{_digits(r, 12)}-{_digits(r, 13)}-{_alnum(r, 24)}"
    seg = string.ascii_letters + string.digits + "_-"
    return "eyJhbGciOiJIUzI1NiJ9." + _alnum(r, 60, seg) + "." + _alnum(r, 43, seg)


def employee_id(r: random.Random) -> str:
    return r.choice([f"EMP-{_digits(r, 6)}", f"EMP{_digits(r, 6)}", f"BDG-{_digits(r, 5)}", f"emp-{_digits(r, 6)}"])


def serial(r: random.Random) -> str:
    return f"PLT{r.randint(1, 12):02d}-{r.choice(['CNC', 'RBT', 'PRS', 'CMP', 'WLD', 'AGV'])}-{_digits(r, 5)}"


# Unlabelled look-alikes that real transcripts contain (must not be anonymized).
def part_number(r: random.Random) -> str:
    return r.choice([
        f"PN {r.randint(200, 999)}-{r.randint(200, 999)}-{_digits(r, 4)}",
        f"P/N {_digits(r, 4)}-{_digits(r, 3)}-{_digits(r, 3)}",
        f"part no. {_digits(r, 3)}.{_digits(r, 3)}.{_digits(r, 4)}",
        f"SKU {_digits(r, 3)}-{_digits(r, 3)}-{_digits(r, 4)}",
    ])


def work_order(r: random.Random) -> str:
    return r.choice([f"WO-2026-{_digits(r, 5)}", f"order {_digits(r, 8)}-{_digits(r, 4)}", f"lot {_digits(r, 6)}-B"])


def timestamp(r: random.Random) -> str:
    return f"2026-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:00Z"


def version(r: random.Random) -> str:
    return f"{r.randint(0, 4)}.{r.randint(0, 30)}.{r.randint(0, 20)}"


def sha(r: random.Random) -> str:
    return _alnum(r, 40, "0123456789abcdef")


def uuid_like(r: random.Random) -> str:
    h = _alnum(r, 32, "0123456789abcdef")
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def tracking(r: random.Random) -> str:
    return r.choice([f"1Z{_alnum(r, 16, string.ascii_uppercase + string.digits)}", _digits(r, 12)])


def measurement(r: random.Random) -> str:
    return r.choice([f"{r.uniform(10, 99):.1f} Nm", f"{r.randint(800, 4200)} rpm", f"{r.uniform(20, 90):.2f} °C",
                     f"{r.randint(100, 9000)} ms"])


LABELLED: dict[str, Callable[[random.Random], str]] = {
    "EMAIL": email, "PHONE": phone, "CARD": credit_card, "IBAN": iban, "IP": ip, "SSN": ssn,
    "BTC": crypto, "KEY": api_key, "EMP": employee_id, "SERIAL": serial,
}
LABEL_TYPE = {
    "EMAIL": "EMAIL_ADDRESS", "PHONE": "PHONE_NUMBER", "CARD": "CREDIT_CARD", "IBAN": "IBAN_CODE",
    "IP": "IP_ADDRESS", "SSN": "US_SSN", "BTC": "CRYPTO", "KEY": "API_KEY", "EMP": "EMPLOYEE_ID",
    "SERIAL": "SERIAL_NUMBER",
}
UNLABELLED: dict[str, Callable[[random.Random], str]] = {
    "PART": part_number, "WO": work_order, "TS": timestamp, "VER": version, "SHA": sha, "UUID": uuid_like,
    "TRACK": tracking, "MEAS": measurement,
}

# Templates modelled on what agents in this project see: chats with plant staff, tool calls and
# tool results (JSON, logs, tables), support tickets, config dumps.
TRANSCRIPTS = [
    "user: Please send the maintenance report for {SERIAL} to {EMAIL} before the shift ends.",
    "user: my card {CARD} was charged twice for the spare parts ({WO}), can you check?",
    "assistant: I have updated the supplier record. New bank details: IBAN {IBAN}. Payment run at {TS}.",
    "user: call me back on {PHONE} when the robot cell is free again",
    "user: Hi, I'm the night supervisor ({EMP}). Spindle on {SERIAL} is at {MEAS}, is that normal?",
    "user: here is my openai key {KEY} - use it for the batch job",
    "assistant: The technician {EMP} will arrive tomorrow. Contact: {PHONE}, {EMAIL}.",
    "user: payroll asks for my SSN, it's {SSN}, please add it to the HR form",
    "user: the gateway at {IP} stopped answering after the firmware {VER} update",
    "user: refund to IBAN {IBAN} please, invoice {WO}",
    "user: donations for the canteen fund go to {BTC}",
    "user: can you order {PART} again? Last time it arrived in 3 days. Ship to {EMAIL}.",
    "assistant: Reordered {PART}. Tracking number {TRACK}. I will notify {EMAIL} on delivery.",
    "user: ssh into {IP} and restart the OPC-UA bridge, the token is {KEY}",
    "user: my colleague {EMP} says the press {SERIAL} failed at {TS}",
    "user: Text me at {PHONE} or mail {EMAIL}. Badge {EMP}.",
    "user: Pay the calibration vendor with card {CARD}, expiry 09/28",
    "user: the commit {SHA} broke the scheduler, revert it",
    "user: what's the torque spec for {PART}? we measured {MEAS}",
    "assistant: Work order {WO} created for {SERIAL}; estimated downtime 45 min.",
]

TOOL_OUTPUTS = [
    '{{"tool": "crm.lookup", "result": {{"name": "{NAME}", "email": "{EMAIL}", "phone": "{PHONE}"}}}}',
    '{{"tool": "hr.employee", "result": {{"id": "{EMP}", "ssn": "{SSN}", "site": "plant 3"}}}}',
    '{{"tool": "billing.charge", "card": "{CARD}", "amount_eur": 129.5, "order": "{WO}"}}',
    '{{"tool": "finance.supplier", "iban": "{IBAN}", "updated_at": "{TS}"}}',
    "2026-11-02 08:14:07 INFO conn from {IP} user={EMAIL} session={UUID}",
    "2026-11-02 08:14:09 WARN auth header Authorization: Bearer {KEY} rejected for {IP}",
    '{{"tool": "assets.get", "serial": "{SERIAL}", "part": "{PART}", "reading": "{MEAS}"}}',
    "export AWS_ACCESS_KEY_ID={KEY}\nexport REGION=eu-central-1",
    "| machine | serial | owner |\n| press 4 | {SERIAL} | {EMP} |",
    '{{"tool": "wallet.balance", "address": "{BTC}", "btc": 0.042}}',
    "{{\"tool\": \"inventory.search\", \"hits\": [\"{PART}\", \"{PART}\"], \"took\": \"{MEAS}\"}}",
    "ping {IP}: 64 bytes, time=0.41 ms; firmware {VER}",
    '{{"tool": "shipping.track", "tracking": "{TRACK}", "eta": "{TS}"}}',
    '{{"tool": "git.log", "commit": "{SHA}", "author_email": "{EMAIL}"}}',
    '{{"tool": "dispatch.robot", "robot": "{SERIAL}", "operator": "{EMP}", "job": "{WO}"}}',
]

NEGATIVES = [
    "user: order {PART} twice, the old one cracked at {MEAS}",
    "user: what does error E-4021 mean on the press? firmware {VER}",
    "assistant: Work order {WO} is scheduled for {TS}. Parts: {PART}, {PART}.",
    '{{"tool": "inventory.search", "query": "{PART}", "stock": 14, "bin": "A-12-03"}}',
    "user: the run {UUID} finished in {MEAS}, commit {SHA}",
    "2026-11-02 08:14:07 INFO job {WO} done; duration {MEAS}; build {VER}",
    "user: track shipment {TRACK} for {WO}",
    "user: is CVE-2023-44487 relevant for firmware {VER}?",
    "assistant: Spindle speed {MEAS}, vibration 2.4 mm/s, temperature {MEAS}. All within limits.",
    "user: replace {PART} and {PART} on line 3; the risk-assessment task-list is in the wiki",
    '{{"tool": "plan.schedule", "jobs": 10, "machines": 10, "makespan": 930, "solver": "cp-sat {VER}"}}',
    "user: quantity 2,000,000 units by week 48; budget 1,250,000.00 EUR; ratio 0.95",
]


def _fill(template: str, r: random.Random) -> dict[str, Any]:
    text = ""
    spans: list[dict[str, Any]] = []
    pos = 0
    for m in re.finditer(r"\{([A-Z]+)\}", template):
        text += template[pos : m.start()].replace("{{", "{").replace("}}", "}")
        slot = m.group(1)
        if slot in LABELLED:
            value = LABELLED[slot](r)
            spans.append({"type": LABEL_TYPE[slot], "start": len(text), "end": len(text) + len(value),
                          "text": value})
        elif slot == "NAME":
            value = f"{r.choice(FIRST).title()} {r.choice(LAST).title()}"
        else:
            value = UNLABELLED[slot](r)
        text += value
        pos = m.end()
    text += template[pos:].replace("{{", "{").replace("}}", "}")
    return {"text": text, "entities": spans}


def generate(n_rounds: int = 5) -> list[dict[str, Any]]:
    """All examples, deterministic for a given seed: every template filled n_rounds times."""
    r = random.Random(SEED)
    out: list[dict[str, Any]] = []
    for round_ in range(n_rounds):
        for kind, templates in (("transcript", TRANSCRIPTS), ("tool_output", TOOL_OUTPUTS), ("negative", NEGATIVES)):
            for i, t in enumerate(templates):
                ex = _fill(t, r)
                out.append({"id": f"{kind}-{i:02d}-{round_}", "kind": kind, **ex})
    return out


def main() -> None:
    data = generate()
    DATASET_PATH.parent.mkdir(parents=True, exist_ok=True)
    DATASET_PATH.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {len(data)} examples to {DATASET_PATH}")


if __name__ == "__main__":
    main()
