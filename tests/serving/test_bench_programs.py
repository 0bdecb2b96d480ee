"""The scarce-slot program workload of `blacksoil bench serving` (the measurement itself runs in the bench)."""

from __future__ import annotations

from blacksoil.config import load_settings
from blacksoil.serving.bench_programs import MAX_CALLS, arrivals, programs, scarce_config, summary


def test_program_lengths_stay_between_1_and_max_calls() -> None:
    lengths = [len(p) for p in programs(500, 0)]
    assert (min(lengths), max(lengths)) == (1, MAX_CALLS)


def test_program_lengths_are_heavy_tailed() -> None:
    lengths = sorted(len(p) for p in programs(500, 0))
    assert lengths[len(lengths) // 2] <= 2 < 10 <= lengths[int(0.95 * len(lengths))]


def test_programs_are_reproducible_from_the_seed() -> None:
    assert programs(24, 3) == programs(24, 3)


def test_arrivals_start_at_zero_and_never_go_back() -> None:
    times = arrivals(24, 0, 40.0)
    assert times[0] == 0.0 and times == sorted(times)


def test_the_scarce_config_has_fewer_slots_than_programs_and_caps_the_flood_tenant() -> None:
    cfg = scarce_config(load_settings().serving, slots=4)
    assert (cfg.slots, cfg.admitted(), cfg.tenancy.limits_for("flood").max_concurrent) == (4, 4, 1)


def test_speedups_are_fcfs_over_agent() -> None:
    keys = summary({"fcfs": [2.0, 4.0], "agent": [1.0, 2.0]})
    assert (keys["program_mean_speedup"], keys["program_p99_speedup"]) == (2.0, 2.0)
