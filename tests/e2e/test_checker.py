"""The history checker finds each anomaly it claims to find, and passes clean histories
(no broker involved: histories are written by hand)."""

from __future__ import annotations

import pytest

from checker import History, check


def clean_history():
    h = History()
    for i in range(4):
        op = h.send("p1", f"v{i}".encode(), 0)
        h.ok(op, 0, i)
    unknown = h.send("p1", b"maybe", 0)
    h.info(unknown, "timed out")
    h.poll("c1", [(0, 0, b"v0"), (0, 1, b"v1")])
    h.poll("c1", [(0, 2, b"v2"), (0, 3, b"v3")])
    final = {0: [(0, b"v0"), (1, b"v1"), (2, b"v2"), (3, b"v3"), (4, b"maybe")]}
    return h, final


def test_a_clean_history_passes_and_indeterminate_writes_may_appear():
    h, final = clean_history()
    report = check(h, final)
    report.assert_clean()
    assert (report.acknowledged, report.indeterminate, report.indeterminate_present) == (4, 1, 1)
    # Absent is fine for an indeterminate write, too.
    final[0].pop()
    check(h, final).assert_clean()


def anomaly(mutate) -> dict:
    h, final = clean_history()
    mutate(h, final)
    return check(h, final).anomalies()


@pytest.mark.parametrize(
    "name, mutate",
    [
        ("lost", lambda h, f: f[0].pop(1)),
        ("duplicated", lambda h, f: f[0].append((5, b"v2"))),
        ("inconsistent", lambda h, f: f.update({0: [(0, b"v0"), (1, b"v2"), (2, b"v1"), (3, b"v3")]})),
        ("unexpected", lambda h, f: f[0].append((5, b"never-sent"))),
        ("non_monotonic_polls", lambda h, f: h.poll("c1", [(0, 1, b"v1")])),
        ("poll_skips", lambda h, f: h.poll("c2", [(0, 0, b"v0"), (0, 3, b"v3")])),
    ],
)
def test_each_anomaly_is_found(name, mutate):
    found = anomaly(mutate)
    assert name in found, f"{name} not reported; found {found}"


def test_a_failed_write_that_was_stored_is_unexpected():
    h, final = clean_history()
    op = h.send("p1", b"refused", 0)
    h.fail(op, "NOT_ENOUGH_REPLICAS")
    final[0].append((5, b"refused"))
    assert "unexpected" in check(h, final).anomalies()


def test_reordering_of_one_producers_writes_is_found():
    h = History()
    a, b = h.send("p", b"a", 0), h.send("p", b"b", 0)
    h.ok(a, 0, 1)
    h.ok(b, 0, 0)
    assert "reordered" in check(h, {0: [(0, b"b"), (1, b"a")]}).anomalies()


def test_a_rebalance_allows_a_consumer_to_go_back():
    h, final = clean_history()
    h.poll("c1", [(0, 1, b"v1")], reset=True)
    check(h, final).assert_clean()


def test_transactions_aborted_reads_and_torn_ones_are_found():
    h = History()
    h.begin("t", "tx-aborted")
    x = h.send("t", b"x", 0, txn="tx-aborted")
    h.ok(x, 0, 0)
    h.end("tx-aborted", "abort")
    h.begin("t", "tx-committed")
    ys = [h.send("t", f"y{i}".encode(), 0, txn="tx-committed") for i in range(3)]
    for i, y in enumerate(ys):
        h.ok(y, 0, 2 + i)
    h.end("tx-committed", "commit")
    clean = {0: [(2, b"y0"), (3, b"y1"), (4, b"y2")]}
    check(h, clean).assert_clean()
    assert "aborted_reads" in check(h, {0: [(0, b"x")] + clean[0]}).anomalies()
    assert "torn_transactions" in check(h, {0: clean[0][:2]}).anomalies()
    h.poll("reader", [(0, 0, b"x")])
    assert "aborted_reads" in check(h, clean).anomalies()


def test_the_report_says_what_it_counted():
    h, final = clean_history()
    final[0].pop(0)
    report = check(h, final)
    with pytest.raises(AssertionError, match="lost 1"):
        report.assert_clean()
