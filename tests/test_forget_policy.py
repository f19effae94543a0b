"""forget's keep policy (model/keep_policy.py) against the real restic 0.14: generated
histories of snapshot times, UTC offsets and tags under generated policies, and calendar edge
cases (ISO weeks across years, week 53, leap days, month ends, DST changes, identical times,
--keep-within boundaries, snapshots in the future). Snapshot files are written straight into
one repository per module (forget --dry-run reads no trees) and restic's `forget --dry-run
--json` is compared with apply_policy group by group.

restic 0.14 lacks current restic's "oldest" rule (the oldest snapshot of a group is kept too
while a count is left); the comparison takes it out of restique's result, and the rule itself
is tested on its own, as are -1 (unlimited) counts, which 0.14 reads as "rule off".
"""
import json
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import PASSWORD, clean_env, run_restic, run_restique

from restique.model.gotime import GoTime
from restique.model.keep_policy import Duration, KeepPolicy, apply_policy
from restique.model.snapshot import Snapshot
from restique.model.snapshot_group import GroupBy, group_snapshots

FAST_KDF = (1 << 10, 8, 1)
TREE = "0" * 64
COUNT_NAMES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
WITHIN_NAMES = ("within", "within_hourly", "within_daily", "within_weekly", "within_monthly", "within_yearly")


@pytest.fixture(scope="module")
def policy_repo(tmp_path_factory):
    """(path, open Repository): a repository with a cheap key whose snapshots each test replaces."""
    from restique.repository.repository import init_repository

    path = tmp_path_factory.mktemp("forget-policy") / "repo"
    repo = init_repository(str(path), PASSWORD, kdf_params=FAST_KDF)
    yield path, repo
    repo.close()


def at(text: str) -> GoTime:
    return GoTime.parse(text)


def write_history(policy_repo, history):
    """Replace the repository's snapshots by history, a list of (GoTime, host, tags);
    returns the Snapshot objects with their ids."""
    path, repo = policy_repo
    for name in os.listdir(path / "snapshots"):
        os.unlink(path / "snapshots" / name)
    out = []
    for when, host, tags in history:
        sn = Snapshot(time=when, tree=TREE, paths=["/data"], hostname=host, username="u",
                      tags=list(tags) or None)
        sn.id = repo.save_json("snapshot", sn.to_json(with_id=False))
        out.append(sn)
    return out


def policy_flags(policy: KeepPolicy):
    flags = []
    for name in COUNT_NAMES:
        if getattr(policy, name):
            flags += [f"--keep-{name}", str(getattr(policy, name))]
    for name in WITHIN_NAMES:
        if not getattr(policy, name).is_zero():
            flags += ["--keep-" + name.replace("_", "-"), str(getattr(policy, name))]
    for tags in policy.tags:
        flags += ["--keep-tag", ",".join(tags)]
    return flags


def restic_verdict(path, policy, env=None):
    """{(host, paths): (keep ids, remove ids, [(matches, counters)])} by restic 0.14."""
    proc = run_restic(path, "--no-lock", "--no-cache", "forget", "--dry-run", "--json",
                      *policy_flags(policy), env=env)
    out = {}
    for group in json.loads(proc.stdout or b"[]"):
        keep = [sn["id"] for sn in group["keep"] or []]
        reasons = [(r["matches"], {k: v for k, v in r["counters"].items() if v})
                   for r in group["reasons"] or []]
        out[(group["host"], tuple(group["paths"]))] = (keep, [sn["id"] for sn in group["remove"] or []], reasons)
    return out


def as_restic_014(result):
    """restique's verdict without current restic's "oldest" rule: (keep ids, remove ids,
    [(matches, counters)]) as restic 0.14 computes them."""
    keep, remove, reasons = [], [sn.id for sn in result.remove], []
    for sn, reason in zip(result.keep, result.reasons):
        counters = {k: v for k, v in reason.counters.items()}
        matches = []
        for match in reason.matches:
            if match.startswith("oldest "):
                bucket = match.split()[1]
                if match.endswith(" snapshot"):  # a counted rule: 0.14 did not count it
                    counters[{"last": "last"}.get(bucket, bucket)] += 1
            else:
                matches.append(match)
        if matches:
            keep.append(sn.id)
            reasons.append((matches, {k: v for k, v in counters.items() if v}))
        else:
            remove.append(sn.id)
    return keep, remove, reasons


def restique_verdict(snapshots, policy, now_ns=None):
    groups, _ = group_snapshots(snapshots, GroupBy(host=True, paths=True))
    return {(key.hostname, key.paths): as_restic_014(apply_policy(members, policy, now_ns))
            for key, members in groups}


def assert_same_as_restic(policy_repo, history, policy, env=None):
    snapshots = write_history(policy_repo, history)
    expected = restic_verdict(policy_repo[0], policy, env)
    got = restique_verdict(snapshots, policy)
    for key in expected:
        exp_keep, exp_remove, exp_reasons = expected[key]
        keep, remove, reasons = got[key]
        assert (keep, sorted(remove), reasons) == (exp_keep, sorted(exp_remove), exp_reasons), key
    assert set(got) == set(expected)


# --- generated histories ------------------------------------------------------------------

OFFSETS = (0, 3600, 7200, -5 * 3600, 5 * 3600 + 1800, -10 * 3600, 14 * 3600)
START = at("2021-11-20T00:00:00Z").unix_ns
SPAN_HOURS = 24 * 500


@st.composite
def histories(draw):
    """Up to 24 snapshots with distinct instants (restic's order of equal times is not
    defined), clustered so that hours, days and weeks hold several, on two hosts."""
    hours = draw(st.lists(st.integers(0, SPAN_HOURS), min_size=1, max_size=24))
    out, seen = [], set()
    for hour in hours:
        ns = START + hour * 3600 * 10**9 + draw(st.integers(0, 3599)) * 10**9
        if ns in seen:
            continue
        seen.add(ns)
        host = draw(st.sampled_from(("h1", "h1", "h2")))
        tags = draw(st.sampled_from(((), ("a",), ("a", "b"), ("b",))))
        out.append((GoTime(ns, draw(st.sampled_from(OFFSETS))), host, tags))
    return out


@st.composite
def policies(draw):
    counts = {name: draw(st.sampled_from((0, 0, 0, 1, 2, 3, 5))) for name in COUNT_NAMES}
    withins = {}
    for name in WITHIN_NAMES:
        if draw(st.integers(0, 5)) == 0:
            withins[name] = Duration(draw(st.integers(0, 1)), draw(st.integers(0, 3)),
                                     draw(st.integers(0, 20)), draw(st.integers(0, 30)))
    tags = draw(st.sampled_from(((), (("a",),), (("a", "b"),), (("",),), (("b",), ("a",)))))
    policy = KeepPolicy(tags=tags, **counts, **withins)
    if policy.empty():
        policy = KeepPolicy(last=1)
    return policy


@settings(max_examples=35, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories(), policy=policies())
def test_generated_histories_match_restic(policy_repo, history, policy):
    assert_same_as_restic(policy_repo, history, policy)


# --- calendar edge cases ------------------------------------------------------------------

def history_of(*times, host="h1", tags=()):
    return [(at(t), host, tags) for t in times]


ISO_WEEKS = history_of(
    "2020-12-27T12:00:00Z", "2020-12-31T23:59:59Z", "2021-01-01T00:00:00Z", "2021-01-03T23:00:00Z",
    "2021-01-04T00:00:00Z", "2015-12-31T10:00:00Z", "2016-01-03T10:00:00Z", "2016-01-04T10:00:00Z",
    "2026-12-31T10:00:00+14:00", "2026-12-31T10:00:00-10:00", "2024-12-30T01:00:00Z", "2024-12-29T23:00:00Z")
LEAP_AND_MONTH_ENDS = history_of(
    "2024-02-28T23:00:00Z", "2024-02-29T12:00:00Z", "2024-03-01T00:30:00Z", "2023-03-01T00:00:00Z",
    "2024-03-31T10:00:00Z", "2024-04-30T10:00:00Z", "2024-05-31T10:00:00Z", "2023-12-31T23:30:00-01:00",
    "2023-02-28T10:00:00Z", "2020-02-29T10:00:00Z")


@pytest.mark.parametrize("history", [ISO_WEEKS, LEAP_AND_MONTH_ENDS], ids=["iso-weeks", "leap-days"])
@pytest.mark.parametrize("policy", [
    KeepPolicy(weekly=6), KeepPolicy(daily=8), KeepPolicy(monthly=5, yearly=3), KeepPolicy(hourly=9),
    KeepPolicy(within=Duration(months=1)), KeepPolicy(within=Duration(years=1, days=1)),
    KeepPolicy(within_weekly=Duration(years=1), within_monthly=Duration(months=13)),
    KeepPolicy(within_daily=Duration(days=2, hours=1)),
], ids=str)
def test_calendar_edges_match_restic(policy_repo, history, policy):
    assert_same_as_restic(policy_repo, history, policy)


def test_keep_within_boundary_is_exclusive(policy_repo):
    """A snapshot exactly `duration` before the newest is not within it; one nanosecond
    later is; 1m before 31 March is 2 March (Go's AddDate normalises 31 February)."""
    history = history_of("2024-03-31T12:00:00Z", "2024-03-29T12:00:00Z", "2024-03-29T12:00:00.000000001Z",
                         "2024-03-02T12:00:00Z", "2024-03-02T12:00:01Z", "2024-03-01T12:00:00Z",
                         "2023-03-31T12:00:00Z", "2023-03-31T11:00:00Z")
    for policy in (KeepPolicy(within=Duration(days=2)), KeepPolicy(within=Duration(months=1)),
                   KeepPolicy(within=Duration(years=1, hours=1)), KeepPolicy(within_hourly=Duration(days=2))):
        assert_same_as_restic(policy_repo, history, policy)
    snapshots = write_history(policy_repo, history)
    kept = apply_policy(snapshots, KeepPolicy(within=Duration(months=1))).keep
    assert [sn.time.rfc3339() for sn in kept][-1] == "2024-03-02T12:00:01Z"


def test_dst_changes_follow_the_snapshots_own_offset(policy_repo):
    """Snapshots written in Europe/Berlin around both DST changes, compared with restic run
    in that zone: buckets use the stored offset, --keep-within counts in local time."""
    history = history_of(
        "2024-03-31T01:30:00+01:00", "2024-03-31T03:30:00+02:00", "2024-03-30T23:30:00+01:00",
        "2024-03-31T00:30:00+01:00", "2024-10-27T02:30:00+02:00", "2024-10-27T02:30:00+01:00",
        "2024-10-26T23:59:00+02:00", "2024-10-27T00:00:00+02:00", "2024-10-20T02:45:00+02:00",
        "2024-03-24T02:15:00+01:00", "2024-03-28T02:15:00+01:00", "2024-04-01T01:00:00+02:00")
    env = clean_env(TZ="Europe/Berlin")
    old_tz = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    import time
    time.tzset()
    try:
        for policy in (KeepPolicy(hourly=12), KeepPolicy(daily=6), KeepPolicy(within=Duration(days=7)),
                       KeepPolicy(within=Duration(months=7, days=6, hours=23)),
                       KeepPolicy(within_hourly=Duration(months=6, days=27))):
            assert_same_as_restic(policy_repo, history, policy, env=env)
    finally:
        if old_tz is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old_tz
        time.tzset()


def test_future_snapshots_never_count_as_newest(policy_repo):
    history = history_of("2099-01-01T00:00:00Z", "2098-06-01T00:00:00Z", "2024-01-10T00:00:00Z",
                         "2024-01-05T00:00:00Z", "2023-12-01T00:00:00Z")
    for policy in (KeepPolicy(within=Duration(days=7)), KeepPolicy(within_daily=Duration(days=30)),
                   KeepPolicy(last=1, within=Duration(months=1))):
        assert_same_as_restic(policy_repo, history, policy)


def test_only_future_snapshots_are_all_within(policy_repo):
    history = history_of("2099-01-01T00:00:00Z", "2098-06-01T00:00:00Z")
    assert_same_as_restic(policy_repo, history, KeepPolicy(within=Duration(days=1)))


def test_identical_times_keep_the_same_number(policy_repo):
    """restic's order of snapshots with equal times is not defined: compare what is kept
    per time, not which of the twins."""
    history = history_of(*["2024-05-01T10:00:00Z"] * 3, *["2024-05-02T10:00:00+02:00"] * 2,
                         "2024-05-02T08:00:00Z", "2024-05-03T10:00:00Z")
    for policy in (KeepPolicy(last=2), KeepPolicy(daily=2), KeepPolicy(last=4, hourly=1)):
        snapshots = write_history(policy_repo, history)
        by_id = {sn.id: sn.time.unix_ns for sn in snapshots}
        restic = restic_verdict(policy_repo[0], policy)[("h1", ("/data",))]
        mine = restique_verdict(snapshots, policy)[("h1", ("/data",))]
        def per_time(verdict):
            keep, remove, reasons = verdict
            return (sorted((by_id[i], r[0]) for i, r in zip(keep, reasons)), sorted(by_id[i] for i in remove))
        assert per_time(mine) == per_time(restic)


def test_keep_tag_with_other_rules(policy_repo):
    history = [(at("2024-01-0%dT10:00:00Z" % day), "h1", tags) for day, tags in
               ((1, ("a",)), (2, ("a", "b")), (3, ()), (4, ("b",)), (5, ("a",)), (6, ()))]
    for policy in (KeepPolicy(tags=(("a",),), last=1), KeepPolicy(tags=(("a", "b"), ("",)), daily=2),
                   KeepPolicy(tags=(("b",),), within=Duration(days=1))):
        assert_same_as_restic(policy_repo, history, policy)


# --- current restic's rules, which restic 0.14 lacks --------------------------------------

def test_oldest_snapshot_kept_while_counts_are_left():
    history = [Snapshot(time=at(t), id=f"{i:064x}", paths=["/d"], hostname="h")
               for i, t in enumerate(("2024-01-01T10:00:00Z", "2024-01-01T12:00:00Z", "2024-01-02T10:00:00Z"))]
    result = apply_policy(history, KeepPolicy(daily=5))
    assert [r.matches for r in result.reasons] == [["daily snapshot"], ["daily snapshot"], ["oldest daily snapshot"]]
    assert [r.counters["daily"] for r in result.reasons] == [4, 3, 2]
    result = apply_policy(history, KeepPolicy(daily=2))  # no count left for the oldest
    assert [sn.id for sn in result.remove] == [history[0].id]
    result = apply_policy(history, KeepPolicy(within_daily=Duration(days=3)))
    assert result.reasons[-1].matches == ["oldest daily within 3d"]
    result = apply_policy(history, KeepPolicy(last=5))
    assert result.reasons[-1].matches == ["last snapshot"]


def test_unlimited_counts_keep_every_bucket():
    history = [Snapshot(time=at(f"2024-0{m}-0{d}T10:00:00Z"), id=f"{m}{d}".rjust(64, "0"), hostname="h")
               for m in (1, 2, 3) for d in (1, 2)]
    result = apply_policy(history, KeepPolicy(monthly=-1))
    assert [sn.time.rfc3339()[:10] for sn in result.keep] == ["2024-03-02", "2024-02-02", "2024-01-02", "2024-01-01"]
    assert [r.counters["monthly"] for r in result.reasons] == [-1] * 4
    assert result.reasons[-1].matches == ["oldest monthly snapshot"]
    assert str(KeepPolicy(last=-1, daily=2)) == "keep all latest, 2 daily snapshots"
    assert len(apply_policy(history, KeepPolicy(last=-1)).keep) == 6


def test_policy_description():
    policy = KeepPolicy(last=2, daily=3, within=Duration(days=2), within_daily=Duration(days=7),
                        within_monthly=Duration(years=1, months=2), tags=(("keep", "x"), ("y",)))
    assert str(policy) == ("keep 2 latest, 3 daily snapshots, daily snapshots within 7d, monthly snapshots "
                           "within 1y2m and all snapshots with tags [[keep, x] [y]] and all snapshots "
                           "within 2d of the newest")
    assert str(KeepPolicy()) == "remove"
    assert KeepPolicy().empty() and not KeepPolicy(tags=(("",),)).empty()


@pytest.mark.parametrize("text, message", [
    ("2x", "invalid unit 'x' found after number 2"), ("d", "no number found"),
    ("5", "no unit found after number 5"), ("1d-", "no number found"),
])
def test_bad_durations(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Duration.parse(text)
    proc = run_restic(None, "forget", "--keep-within", text, check=False)
    assert message in proc.stderr.decode()


def test_durations():
    assert Duration.parse(" 1y2m3d4h ") == Duration(1, 2, 3, 4)
    assert str(Duration.parse("3d1y0m")) == "1y3d"
    assert Duration.parse("").is_zero() and Duration.parse("-1d").has_negative()


def test_cli_applies_the_same_policy(policy_repo):
    """The command's JSON (current restic's schema) carries apply_policy's verdict."""
    history = history_of("2024-01-01T10:00:00Z", "2024-01-01T12:00:00Z", "2024-01-03T10:00:00Z")
    snapshots = write_history(policy_repo, history)
    proc = run_restique(policy_repo[0], "--no-lock", "forget", "--dry-run", "--json", "--keep-daily", "5")
    (group,) = json.loads(proc.stdout)
    expected = apply_policy(snapshots, KeepPolicy(daily=5))
    assert [sn["id"] for sn in group["keep"]] == [sn.id for sn in expected.keep]
    assert [r["matches"] for r in group["reasons"]] == [r.matches for r in expected.reasons]
    assert [r["snapshot"]["id"] for r in group["reasons"]] == [sn.id for sn in expected.keep]
    assert group["remove"] is None and set(group["reasons"][0]) == {"snapshot", "matches"}


def test_library_call(policy_repo):
    """forget() as a Python program calls it: the plan reaches on_plan before anything is
    removed, IDs remove exactly those snapshots, unknown ones are warnings."""
    from restique.model.snapshot_filter import SnapshotFilter
    from restique.operations.forget import ForgetOptions, forget

    snapshots = write_history(policy_repo, history_of("2024-01-01T10:00:00Z", "2024-01-02T10:00:00Z")
                              + history_of("2024-01-03T10:00:00Z", host="h2"))
    repo = policy_repo[1]
    seen, warnings = [], []
    result = forget(repo, ForgetOptions(policy=KeepPolicy(last=1), filter=SnapshotFilter(hosts=["h1"])),
                    on_plan=lambda plan: seen.append(sorted(repo.list_ids("snapshot"))))
    assert seen == [sorted(sn.id for sn in snapshots)]
    assert [g.key.hostname for g in result.groups] == ["h1"]
    assert result.remove_ids == result.removed == [snapshots[0].id]
    result = forget(repo, ForgetOptions(snapshot_ids=[snapshots[2].id[:8], "ffffffff"], dry_run=True),
                    warn=warnings.append)
    assert (result.groups, result.remove_ids, result.removed) == ([], [snapshots[2].id], [])
    assert warnings == ['Ignoring "ffffffff": no matching ID found for prefix "ffffffff"']
    assert sorted(repo.list_ids("snapshot")) == sorted(sn.id for sn in snapshots[1:])


def test_removal_failures_go_on_and_exit_3(policy_repo):
    """A snapshot file that cannot be removed is reported, the others are removed, and the
    error carries restic's exit code 3."""
    from restique.operations.forget import ForgetOptions, SnapshotRemovalFailed, forget

    snapshots = write_history(policy_repo, history_of("2024-01-01T10:00:00Z", "2024-01-02T10:00:00Z",
                                                      "2024-01-03T10:00:00Z"))
    stuck = snapshots[1].id

    class StuckFile:
        def __getattr__(self, name):
            return getattr(policy_repo[1], name)

        def remove(self, kind, file_id):
            if file_id == stuck:
                raise PermissionError(13, "Permission denied")
            policy_repo[1].remove(kind, file_id)

    reports = []
    with pytest.raises(SnapshotRemovalFailed) as failure:
        forget(StuckFile(), ForgetOptions(snapshot_ids=[sn.id for sn in snapshots]),
               on_removed=lambda sid, error: reports.append((sid, error is None)))
    assert failure.value.exit_code == 3 and failure.value.failed == [stuck]
    assert sorted(reports) == sorted((sn.id, sn.id != stuck) for sn in snapshots)
    assert policy_repo[1].list_ids("snapshot") == [stuck]
