"""The backup's fast local-time texts (a per-day cache, no GoTime per entry) equal GoTime's
own formatting of the same instant, in zones with odd offsets and summer time, before 1970
and past year 9999. Each zone runs in its own interpreter: the zone is read at import."""
import os
import subprocess
import sys

import pytest

CHECK = r"""
import random
from restique.model.gotime import GoTime
from restique.operations.fs_metadata import formatted_local_time, local_time, local_time_text

r = random.Random(7)
S = 1_000_000_000
samples = [0, -1, 1, 253402300799 * S, 253402300800 * S + 5, -62135510400 * S]
samples += [r.randint(-3_000_000_000, 4_000_000_000) * S + r.choice([0, r.randrange(S)]) for _ in range(20000)]
# the hours around summer-time changes of 2021 in Europe and North America
for start in (1616893200, 1635642000, 1615701600, 1636264800):
    samples += [(start + d) * S + 123 for d in range(-7200, 7200, 61)]
for ns in samples:
    want = local_time(ns).rfc3339()
    assert local_time_text(ns) == want, (ns, local_time_text(ns), want)
    t = formatted_local_time(ns)
    assert t.rfc3339() == want and (t.unix_ns, t.offset) == (local_time(ns).unix_ns, local_time(ns).offset), ns
    # years 1990-9999 (earlier, some zones had offsets with seconds, which RFC 3339 text drops, as Go's)
    if want[4] == "-" and "1990" <= want[:4]:
        assert GoTime.parse(want).unix_ns == ns, (ns, want)
print("ok", len(samples))
"""


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/St_Johns", "Asia/Kathmandu",
                                  "America/New_York", "Australia/Lord_Howe"])
def test_time_texts_equal_gotime_formatting(zone):
    env = {**os.environ, "TZ": zone}
    proc = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("ok"), proc.stderr[-2000:]


SCAN_CHECK = r"""
import os, random, sys
from restique import _scan
from restique.operations.fs_metadata import local_time_text, node_from_fields, node_from_stat

folder = sys.argv[1]
r = random.Random(11)
S = 1_000_000_000
samples = [0, 1, -1, 86399 * S, 86400 * S, 4102444800 * S + 999_999_999, 1616893200 * S + 5]
samples += [r.randint(-1_000_000_000, 4_000_000_000) * S + r.choice([0, r.randrange(S)]) for _ in range(400)]
for start in (1616893200, 1635642000, 1615701600, 1636264800):
    samples += [(start + d) * S + 120 for d in range(-3600, 3600, 97)]
for i, ns in enumerate(samples):
    path = os.path.join(folder, "f%04d" % i)
    open(path, "w").close()
    os.utime(path, ns=(ns + 7, ns))
formatted = 0
for name, err, st, link, xattrs in _scan.scan_dir(folder, False):
    for ns, text in ((st.st_atime_ns, st.atime_text), (st.st_mtime_ns, st.mtime_text), (st.st_ctime_ns, st.ctime_text)):
        assert text is None or text == local_time_text(ns), (ns, text, local_time_text(ns))
        formatted += text is not None
    for with_atime in (False, True):
        ours = node_from_fields(name, st, None, None, with_atime)
        want = node_from_stat(name, os.path.join(folder, name), os.lstat(os.path.join(folder, name)), with_atime, False)
        assert ours == want and ours.mtime.rfc3339() == want.mtime.rfc3339() and ours.mtime.offset == want.mtime.offset
print("ok", formatted)
"""


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/St_Johns", "Asia/Kathmandu",
                                  "Australia/Lord_Howe"])
def test_scanned_time_texts_equal_python_formatting(zone, tmp_path):
    """The native scan formats each entry's times itself (years 1970-9999 in the local zone,
    None elsewhere): its texts and the nodes made from them equal the Python formatting's."""
    env = {**os.environ, "TZ": zone}
    proc = subprocess.run([sys.executable, "-c", SCAN_CHECK, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("ok"), proc.stderr[-2000:]
    assert int(proc.stdout.split()[1]) > 1000
