"""Gradient bytes on the wire between two learner ranks on two Ray nodes, read from the kernel's socket counters."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from blacksoil.learning.basemodel import ensure_hf_copy, load_tokenizer
from blacksoil.learning.config import LearningConfig
from blacksoil.learning.worker import fixed_samples
from blacksoil.scheduling.backends.ray_ddp_bench import ddp_wire_bytes, socket_inodes, tcp_counters

ray = pytest.importorskip("ray")

STEPS = 3


def test_tcp_counters_read_the_bytes_a_socket_sent_and_received() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        before = socket_inodes()
        with socket.create_connection(server.getsockname()) as client:
            peer, _ = server.accept()
            with peer:
                client.sendall(b"x" * 100_000)
                got = 0
                while got < 100_000:
                    got += len(peer.recv(65536))
                counters = tcp_counters(socket_inodes() - before)
    assert sorted((c.sent, c.received) for c in counters.values()) == [(0, 100_000), (100_000, 0)]


@pytest.fixture(scope="module")
def wire(ray_cluster: Any, blacksoil_home: Path) -> dict[str, Any]:
    info = ensure_hf_copy(blacksoil_home)
    t = time.monotonic()
    out = ddp_wire_bytes(info, fixed_samples(load_tokenizer(info)), nodes=("n1", "n2"), steps=STEPS,
                         hooks=("none", "priority"),
                         cfg=LearningConfig(batch_size=2, max_seq_len=48, lora_layers=2))
    print(f"ddp wire: 2 hooks x {STEPS} steps in {time.monotonic() - t:.1f}s; "
          f"{ {h: a['bytes_each_step'] for h, a in out['arms'].items()} }")
    return out


def test_the_ranks_run_on_two_nodes(wire: dict[str, Any]) -> None:
    assert wire["arms"]["priority"]["nodes"] == 2


def test_fp32_wire_bytes_cover_each_rank_sending_its_whole_gradient(wire: dict[str, Any]) -> None:
    fp32 = wire["arms"]["none"]
    assert min(fp32["bytes_each_step"]) >= 2 * fp32["gradient_bytes"]


def test_priority_sends_under_a_fifth_of_fp32_on_its_compressed_steps(wire: dict[str, Any]) -> None:
    fp32, ours = wire["arms"]["none"], wire["arms"]["priority"]
    assert max(ours["bytes_each_step"][1:]) < 0.2 * min(fp32["bytes_each_step"])  # step 1 is exact by design


def test_every_counted_byte_reached_the_other_rank(wire: dict[str, Any]) -> None:
    assert wire["arms"]["priority"]["all_received"]


def test_priority_ranks_stay_bit_identical(wire: dict[str, Any]) -> None:
    assert wire["arms"]["priority"]["in_sync"]


def test_both_hooks_start_from_the_same_loss(wire: dict[str, Any]) -> None:
    assert wire["arms"]["priority"]["losses"][0] == wire["arms"]["none"]["losses"][0]
