"""The load test's counting (bench/load_test.py), on fabricated rows.

The load test itself takes minutes and every core (`make load-test`); what decides
its verdict (lost, duplicated) and its spread figures is checked here."""

from collections import Counter

import pytest

from bench import load_test
from bench.load_test import TaskRun, idle_while_waiting, parse_task_lines, tally

SENT = ["740000000", "740000001", "740000002"]


def test_a_clean_run_counts_every_payment_posted_once():
    counted = tally(
        sent=SENT,
        acked=SENT,
        postings=Counter(SENT),
        posted=SENT,
        receipts=Counter(SENT),
    )

    assert (counted.sent, counted.acknowledged, counted.posted) == (3, 3, 3)
    assert (counted.lost, counted.duplicated, counted.unexpected) == (0, 0, 0)
    assert counted.passed


def test_an_acknowledged_payment_without_a_receipt_is_lost():
    counted = tally(
        sent=SENT,
        acked=SENT,
        postings=Counter(SENT),
        posted=SENT,
        receipts=Counter(SENT[:2]),  # the posting says posted, Sage Pro has none
    )

    assert counted.lost == 1
    assert counted.lost_ids == ["740000002"]
    assert not counted.passed


def test_an_acknowledged_payment_whose_posting_never_posted_is_lost():
    counted = tally(
        sent=SENT,
        acked=SENT,
        postings=Counter(SENT),
        posted=SENT[1:],  # the first one's posting is still failed
        receipts=Counter(SENT),
    )

    assert counted.lost_ids == ["740000000"]


def test_an_event_never_acknowledged_is_not_lost_but_counted():
    counted = tally(
        sent=SENT,
        acked=SENT[:2],
        postings=Counter(SENT[:2]),
        posted=SENT[:2],
        receipts=Counter(SENT[:2]),
    )

    assert counted.lost == 0
    assert counted.unacknowledged == 1
    assert counted.posted == 2


@pytest.mark.parametrize(
    ("postings", "receipts"),
    [
        (Counter(SENT + ["740000001"]), Counter(SENT)),  # two postings
        (Counter(SENT), Counter(SENT + ["740000001"])),  # two Sage Pro receipts
    ],
)
def test_a_second_posting_or_receipt_for_one_payment_is_a_duplicate(postings, receipts):
    counted = tally(
        sent=SENT, acked=SENT, postings=postings, posted=SENT, receipts=receipts
    )

    assert counted.duplicated == 1
    assert counted.duplicated_ids == ["740000001"]
    assert counted.lost == 0
    assert not counted.passed


def test_a_receipt_for_a_payment_nobody_sent_is_unexpected():
    counted = tally(
        sent=SENT,
        acked=SENT,
        postings=Counter(SENT),
        posted=SENT,
        receipts=Counter([*SENT, "749999999"]),
    )

    assert counted.unexpected == 1
    assert not counted.passed


LOG = """\
2026-12-06 23:57:15,283 INFO django-q Process-9a processing drain 'integrations.tasks.drain'
LOADTEST-TASK start pid=11 id=aaa at=100.000
LOADTEST-TASK start pid=12 id=bbb at=100.500
LOADTEST-TASK stop pid=11 id=aaa at=104.000 func=drain events=50
LOADTEST-TASK start pid=11 id=ccc at=104.100
LOADTEST-TASK stop pid=11 id=ccc at=104.200 func=process_event events=1
"""


def test_task_lines_give_each_run_its_process_time_and_events():
    runs = {(r.pid, r.start): r for r in parse_task_lines("q1-1", LOG)}

    assert runs[(11, 100.0)].stop == 104.0
    assert runs[(11, 100.0)].events == 50
    assert runs[(11, 104.1)].func == "process_event"
    # pid 12 was SIGKILLed mid-task: its run has no end
    assert runs[(12, 100.5)].stop is None


def test_work_is_attributed_to_each_qcluster_and_worker():
    runs = parse_task_lines("qcluster-1#1", LOG)

    work = load_test.work_by_process(runs)["qcluster-1#1"]

    assert work["tasks"] == 3
    assert work["events"] == 51
    assert work["busy_s"] == pytest.approx(4.1)
    assert work["workers"] == {
        "11": {"tasks": 2, "events": 51},
        "12": {"tasks": 1, "events": 0},
    }


def test_a_worker_slot_without_a_task_while_events_wait_is_idle():
    runs = [
        TaskRun("a", 1, start=0.0, stop=10.0),
        TaskRun("a", 2, start=0.0, stop=5.0),
    ]
    samples = [(1.0, 3), (6.0, 3), (8.0, 0)]  # at 8 nothing waits: not counted

    idle = idle_while_waiting(samples, runs, {"a": (0.0, 20.0)}, slots=2)

    assert idle["samples_with_work_waiting"] == 2
    assert idle["slot_samples"] == 4
    assert idle["idle_slot_samples"] == 1  # worker 2 at 6.0
    assert idle["idle_share"] == pytest.approx(0.25)


def test_work_queued_only_for_the_wake_up_is_not_counted_as_waiting_past_it():
    runs = [TaskRun("a", 1, start=0.0, stop=10.0)]
    # (time, queued, seconds the oldest has waited): at 4.0 an event was just stored;
    # at 6.0 one had waited 3 s while the second worker had nothing to do.
    samples = [(4.0, 1, 0.1), (6.0, 2, 3.0)]

    every = idle_while_waiting(samples, runs, {"a": (0.0, 20.0)}, slots=2)
    stale = idle_while_waiting(samples, runs, {"a": (0.0, 20.0)}, slots=2, min_wait=1.0)

    assert (every["samples_with_work_waiting"], every["idle_slot_samples"]) == (2, 2)
    assert (stale["samples_with_work_waiting"], stale["idle_slot_samples"]) == (1, 1)


def test_a_killed_qcluster_is_neither_idle_nor_busy_after_its_death():
    runs = [TaskRun("killed", 1, start=0.0, stop=None)]  # cut short by SIGKILL
    alive = {"killed": (0.0, 5.0), "new": (7.0, 20.0)}

    idle = idle_while_waiting([(2.0, 1), (6.0, 1), (8.0, 1)], runs, alive, slots=1)

    # 2.0: the killed worker busy until its death; 6.0: no qcluster running;
    # 8.0: the new qcluster's worker has no task yet.
    assert idle["slot_samples"] == 2
    assert idle["idle_slot_samples"] == 1


def test_a_drain_reports_how_many_events_it_took_and_a_failure_none():
    assert (
        load_test.events_done(
            "drain", {"success": True, "result": "12 events in 1 batches"}
        )
        == 12
    )
    assert (
        load_test.events_done("process_event", {"success": True, "result": "posted"})
        == 1
    )
    assert (
        load_test.events_done(
            "drain", {"success": False, "result": "the connection is lost"}
        )
        == 0
    )
    assert (
        load_test.events_done("sweep", {"success": True, "result": {"events": 3}}) == 0
    )


def test_figures_are_compared_with_the_baseline_phase():
    def phase(rate, p95):
        spread = {"p50": 0.1, "p95": p95, "p99": p95, "max": p95, "n": 10}
        return {
            "accepted_per_s": rate,
            "postings_per_s": rate,
            "webhook_answer_s": spread,
            "received_to_posted_s": spread,
            "sent_to_posted_s": spread,
        }

    phases = load_test.with_ratios(
        {"baseline (no fault)": phase(10.0, 2.0), "worker kill": phase(5.0, 8.0)}
    )

    ratios = phases["worker kill"]["vs_baseline"]
    assert ratios["accepted_per_s"] == pytest.approx(0.5)
    assert ratios["received_to_posted_p95"] == pytest.approx(4.0)
    assert phases["baseline (no fault)"]["vs_baseline"]["sent_to_posted_p95"] == 1.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--minutes", "0"], "--minutes"),
        (["--rate", "0"], "--rate"),
        (["--clusters", "1"], "--clusters"),
        (["--saturation-events", "10"], "--saturation-events"),
    ],
)
def test_bad_arguments_are_refused_with_the_fix(argv, message, capsys):
    with pytest.raises(SystemExit):
        load_test.parse_args(argv)
    assert message in capsys.readouterr().err
