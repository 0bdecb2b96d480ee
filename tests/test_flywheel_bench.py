"""The pure rules behind `blacksoil bench flywheel`'s bars: SLO windows, planted-PII search, lost/repeated steps,
resume times, and which bars a result meets."""

from __future__ import annotations

from blacksoil.flywheel_bench import FlywheelOptions, _bars
from blacksoil.flywheel_metrics import core_grants, p99, pii_hits, resume_times, slo_attainment, step_faults
from blacksoil.flywheel_traffic import PLANTED_PII, PiiPrompts, rate_answer, rate_question

PLANTED = ("anna.berg@northwind.com", "+1 415-867-2291", "4111 1111 1111 1111")


def test_p99_of_few_values_is_the_worst() -> None:
    assert p99([0.01, 0.02, 0.5]) == 0.5


def test_p99_of_nothing_is_zero() -> None:
    assert p99([]) == 0.0


def test_p99_of_a_hundred_values_ignores_the_single_worst() -> None:
    assert p99([0.01] * 99 + [9.0]) == 0.01


def test_a_window_within_the_slo_is_met() -> None:
    assert slo_attainment([(1.0, 0.05), (5.0, 0.05)], 0.0, 10.0, slo_s=0.1).met == 1


def test_a_window_over_the_slo_is_missed() -> None:
    assert slo_attainment([(1.0, 0.05), (5.0, 0.5)], 0.0, 10.0, slo_s=0.1).met == 0


def test_attainment_is_the_share_of_windows_met() -> None:
    gaps = [(1.0, 0.05), (11.0, 0.5), (21.0, 0.05), (31.0, 0.05)]
    assert slo_attainment(gaps, 0.0, 40.0, slo_s=0.1).attainment == 0.75


def test_a_window_without_tokens_counts_as_missed() -> None:
    assert slo_attainment([(1.0, 0.05)], 0.0, 20.0, slo_s=0.1).attainment == 0.5


def test_missed_windows_are_named() -> None:
    assert slo_attainment([(1.0, 0.05), (11.0, 0.5), (21.0, 0.05)], 0.0, 30.0, slo_s=0.1).missed == (1,)


def test_empty_windows_are_reported() -> None:
    assert slo_attainment([(1.0, 0.05)], 0.0, 20.0, slo_s=0.1).empty == 1


def test_a_trailing_partial_window_is_left_out() -> None:
    assert slo_attainment([(1.0, 0.05), (12.0, 9.0)], 0.0, 15.0, slo_s=0.1).windows == 1


def test_gaps_outside_the_phase_are_ignored() -> None:
    assert slo_attainment([(-1.0, 9.0), (1.0, 0.05)], 0.0, 10.0, slo_s=0.1).met == 1


def test_no_window_means_zero_attainment() -> None:
    assert slo_attainment([], 0.0, 5.0, slo_s=0.1).attainment == 0.0


def test_a_planted_value_as_written_is_found() -> None:
    assert pii_hits(["mail anna.berg@northwind.com now"], PLANTED)["anna.berg@northwind.com"] == 1


def test_a_planted_value_with_other_separators_is_found() -> None:
    assert pii_hits(["card 4111-1111-1111-1111"], PLANTED)["4111 1111 1111 1111"] == 1


def test_a_planted_phone_without_separators_is_found() -> None:
    assert pii_hits(["call 14158672291"], PLANTED)["+1 415-867-2291"] == 1


def test_a_planted_value_is_found_regardless_of_case() -> None:
    assert pii_hits(["ANNA.BERG@NORTHWIND.COM"], PLANTED)["anna.berg@northwind.com"] == 1


def test_an_anonymized_text_has_no_hit() -> None:
    text = "Customer <EMAIL_ADDRESS> (or <PHONE_NUMBER>) pays with <CREDIT_CARD>."
    assert sum(pii_hits([text], PLANTED).values()) == 0


def test_hits_count_texts() -> None:
    texts = ["anna.berg@northwind.com", "x", "anna.berg@northwind.com"]
    assert pii_hits(texts, PLANTED)["anna.berg@northwind.com"] == 2


def test_a_clean_training_has_no_fault() -> None:
    assert step_faults([1, 2, 3, 4], 4, done=True) == (0, 0)


def test_a_step_run_twice_is_repeated() -> None:
    assert step_faults([1, 2, 3, 2, 3, 4], 4, done=True)[1] == 2


def test_a_skipped_step_is_lost() -> None:
    assert step_faults([1, 2, 4], 4, done=True)[0] == 1


def test_a_finished_training_owes_every_step() -> None:
    assert step_faults([1, 2], 4, done=True)[0] == 2


def test_a_training_called_off_owes_no_step_after_its_last() -> None:
    assert step_faults([1, 2], 4, done=False) == (0, 0)


def test_a_training_called_off_still_owes_the_steps_it_went_past() -> None:
    assert step_faults([1, 3], 4, done=False)[0] == 1


def test_a_grant_is_when_the_learner_gets_cores_after_none() -> None:
    assert core_grants([(0.0, False), (1.0, True), (2.0, True), (3.0, False), (4.0, True)]) == [1.0, 4.0]


def test_a_restart_resumes_from_the_latest_grant_before_its_first_step() -> None:
    records = [{"pid": 1, "at": 10.0}, {"pid": 1, "at": 11.0}, {"pid": 2, "at": 30.0}, {"pid": 2, "at": 31.0}]
    assert resume_times(records, [0.0, 20.0, 24.0]) == [6.0]


def test_steps_of_one_process_are_no_resume() -> None:
    assert resume_times([{"pid": 1, "at": 1.0}, {"pid": 1, "at": 2.0}], [0.0]) == []


def test_quick_measures_rss_over_fewer_requests() -> None:
    assert FlywheelOptions.make(quick=True, minutes=None).rss_requests == 500


def test_the_full_run_measures_rss_over_ten_thousand_requests() -> None:
    assert FlywheelOptions.make(quick=False, minutes=None).rss_requests == 10_000


def _result(**over: object) -> dict[str, object]:
    good: dict[str, object] = {"failed_requests": 0, "lost_steps": 0, "repeated_steps": 0, "pii_in_training": 0,
                               "promoted_versions": 1, "dev_completion_before": 0.3, "dev_completion_after": 0.6,
                               "serving_slo_attainment": 1.0, "preemptions": 1, "resume_s_p50": 4.0,
                               "rss_growth_mb": 12.0}
    return good | over


def test_a_result_meeting_every_bar_meets_them_all() -> None:
    assert all(_bars(_result()).values())


def test_an_unchanged_dev_score_misses_its_bar() -> None:
    assert not _bars(_result(dev_completion_after=0.3))["dev_completion_after"]


def test_a_gate_that_never_ran_misses_the_dev_bar() -> None:
    assert not _bars(_result(dev_completion_before=None, dev_completion_after=None))["dev_completion_after"]


def test_slo_attainment_below_099_misses_its_bar() -> None:
    assert not _bars(_result(serving_slo_attainment=0.98))["serving_slo_attainment"]


def test_rss_growth_over_100_mb_misses_its_bar() -> None:
    assert not _bars(_result(rss_growth_mb=100.5))["rss_growth_mb"]


def test_an_answer_naming_the_asked_rate_is_rated_good() -> None:
    rate = rate_question(0, 3).split(" runs at ")[1].split()[0]
    assert rate_answer(0, 3, f"{rate}.") == 1.0


def test_an_answer_missing_the_asked_rate_is_rated_bad() -> None:
    assert rate_answer(0, 3, "Press 4 is fine.") == 0.0


def test_every_pii_prompt_carries_planted_values() -> None:
    prompts = PiiPrompts()
    assert all(sum(v in prompts(0, n) for v in PLANTED_PII) == 2 for n in range(len(PLANTED_PII)))


def test_pii_prompts_count_what_they_made() -> None:
    prompts = PiiPrompts()
    prompts(0, 0), prompts(0, 1)
    assert prompts.sent == 2
