"""restic's path patterns (internal/filter): restic's own test tables, edge cases, and the
real restic deciding which paths `backup --exclude` and `restore --include` keep."""
import json
import os
import random

import pytest

from restique.errors import UsageError
from restique.model import patterns as pm
from restique.model.patterns import InvalidPatternError, PatternList, read_pattern_file

from conftest import clean_env, run_restic


def match(pattern, path, ci=False):
    return PatternList([pattern], case_insensitive=ci).matches(path)


def child(pattern, path, ci=False):
    return PatternList([pattern], case_insensitive=ci).child_may_match(path)


# --- restic's filter_test.go tables ------------------------------------------------------
# matchTests, except the empty pattern (filter.Match's "" matches everything; lists ignore it)

MATCH_TESTS = [
    ("*.go", "/foo/bar/test.go", True),
    ("*.c", "/foo/bar/test.go", False),
    ("*", "/foo/bar/test.go", True),
    ("**", "/foo/bar/test.go", True),
    ("foo*", "/foo/bar/test.go", True),
    ("bar*", "/foo/bar/test.go", True),
    ("/bar*", "/foo/bar/test.go", False),
    ("bar/*", "/foo/bar/test.go", True),
    ("baz/*", "/foo/bar/test.go", False),
    ("bar/test.go", "/foo/bar/test.go", True),
    ("bar/*.go", "/foo/bar/test.go", True),
    ("ba*/*.go", "/foo/bar/test.go", True),
    ("bb*/*.go", "/foo/bar/test.go", False),
    ("test.*", "/foo/bar/test.go", True),
    ("tesT.*", "/foo/bar/test.go", False),
    ("bar/*", "/foo/bar/baz", True),
    ("bar", "/foo/bar", True),
    ("/foo/bar", "/foo/bar", True),
    ("/foo/bar/", "/foo/bar", True),
    ("/foo/bar", "/foo/baz", False),
    ("/foo/bar", "/foo/baz/", False),
    ("/foo///bar", "/foo/bar", True),
    ("/foo/../bar", "/foo/bar", False),
    ("/foo/../bar", "/bar", True),
    ("/foo", "/foo/baz", True),
    ("/foo/", "/foo/baz", True),
    ("/foo/*", "/foo", False),
    ("/foo/*", "/foo/baz", True),
    ("bar", "/foo/bar/baz", True),
    ("bar", "/foo/bar/test.go", True),
    ("/foo/*test.*", "/foo/bar/test.go", False),
    ("/foo/*/test.*", "/foo/bar/test.go", True),
    ("/foo/*/bar/test.*", "/foo/bar/test.go", False),
    ("/*/*/bar/test.*", "/foo/bar/test.go", False),
    ("/*/*/bar/test.*", "/foo/bar/baz/test.go", False),
    ("/*/*/baz/test.*", "/foo/bar/baz/test.go", True),
    ("/*/foo/bar/test.*", "/foo/bar/baz/test.go", False),
    ("/foo/bar/test.*", "bar/baz/test.go", False),
    ("/x/y/bar/baz/test.*", "bar/baz/test.go", False),
    ("/x/y/bar/baz/test.c", "bar/baz/test.go", False),
    ("baz/test.*", "bar/baz/test.go", True),
    ("baz/tesT.*", "bar/baz/test.go", False),
    ("test.go", "bar/baz/test.go", True),
    ("*.go", "bar/baz/test.go", True),
    ("*.c", "bar/baz/test.go", False),
    ("sdk", "/foo/bar/sdk", True),
    ("sdk", "/foo/bar/sdk/test/sdk_foo.go", True),
    ("sdk/*/cpp/*/*vars*.html", "/usr/share/doc/libreoffice/sdk/docs/cpp/ref/a00517.html", False),
    ("foo/**/bar/*.go", "/home/user/foo/work/special/project/bar/test.go", True),
    ("foo/**/bar/*.go", "/home/user/foo/bar/test.go", True),
    ("foo/**/bar/*.go", "x/foo/bar/test.go", True),
    ("foo/**/bar/*.go", "foo/bar/test.go", True),
    ("foo/**/bar/*.go", "foo/bar/baz/bar/test.go", True),
    ("foo/**/bar/*.go", "/home/user/foo/test.c", False),
    ("foo/**/bar/*.go", "bar/foo/main.go", False),
    ("foo/**/bar/*.go", "/foo/bar/main.go", True),
    ("foo/**/bar/*.go", "bar/main.go", False),
    ("foo/**/bar", "/home/user/foo/x/y/bar", True),
    ("foo/**/bar", "/home/user/foo/x/y/bar/main.go", True),
    ("foo/**/bar/**/x", "/home/user/foo/bar/x", True),
    ("foo/**/bar/**/x", "/home/user/foo/blaaa/blaz/bar/shared/work/x", True),
    ("user/**/important*", "/home/user/work/x/y/hidden/x", False),
    ("user/**/hidden*/**/c", "/home/user/work/x/y/hidden/z/a/b/c", True),
    ("c:/foo/*test.*", "c:/foo/bar/test.go", False),
    ("c:/foo", "c:/foo/bar", True),
    ("c:/foo/", "c:/foo/bar", True),
    ("c:/foo/*/test.*", "c:/foo/bar/test.go", True),
    ("c:/foo/*/bar/test.*", "c:/foo/bar/test.go", False),
    # ExampleMatch, ExampleMatch_wildcards
    ("*.go", "/home/user/file.go", True),
    ("/home/[uU]ser/?.go", "/home/user/F.go", True),
]

CHILD_MATCH_TESTS = [
    ("foo/bar", "/foo", True),
    ("baz/bar", "/foo", True),
    ("foo", "/foo/bar", True),
    ("bar", "/foo", True),
    ("baz", "/foo/bar", True),
    ("*", "/foo", True),
    ("*", "/foo/bar", True),
    ("/foo/bar", "/foo", True),
    ("/foo/bar/baz", "/foo", True),
    ("/foo/bar/baz", "/foo/bar", True),
    ("/foo/bar/baz", "/foo/baz", False),
    ("/foo/**/baz", "/foo/bar/baz", True),
    ("/foo/**/baz", "/foo/bar/baz/blah", True),
    ("/foo/**/qux", "/foo/bar/baz/qux", True),
    ("/foo/**/qux", "/foo/bar/baz", True),
    ("/foo/**/qux", "/foo/bar/baz/boo", True),
    ("/foo/**", "/foo/bar/baz", True),
    ("/foo/**", "/foo/bar", True),
    ("foo/**/bar/**/x", "/home/user/foo", True),
    ("foo/**/bar/**/x", "/home/user/foo/bar", True),
    ("foo/**/bar/**/x", "/home/user/foo/blaaa/blaz/bar/shared/work/x", True),
    ("/foo/*/qux", "/foo/bar", True),
    ("/foo/*/qux", "/foo/bar/boo", False),
    ("/foo/*/qux", "/foo/bar/boo/xx", False),
    ("/baz/bar", "/foo", False),
    ("/foo", "/foo/bar", True),
    ("/*", "/foo", True),
    ("/*", "/foo/bar", True),
    ("/foo", "/foo/bar", True),
    ("/**", "/foo", True),
    ("/*/**", "/foo", True),
    ("/*/**", "/foo/bar", True),
    ("/*/bar", "/foo", True),
    ("/bar/*", "/foo", False),
    ("/foo/*/baz", "/foo/bar", True),
    ("/foo/*/baz", "/foo/baz", True),
    ("/foo/*/baz", "/bar/baz", False),
    ("/**/*", "/foo", True),
    ("/**/bar", "/foo/bar", True),
]

LIST_TESTS = [
    ([], "/foo/bar/test.go", False, False),
    (["*.go"], "/foo/bar/test.go", True, True),
    (["*.go"], "/foo/bar", False, True),
    (["*.c"], "/foo/bar/test.go", False, True),
    (["*.go", "*.c"], "/foo/bar/test.go", True, True),
    (["*"], "/foo/bar/test.go", True, True),
    (["x"], "/foo/bar/test.go", False, True),
    (["?"], "/foo/bar/test.go", False, True),
    (["?", "x"], "/foo/bar/x", True, True),
    (["/*/*/bar/test.*"], "/foo/bar/test.go", False, False),
    (["/*/*/bar/test.*"], "/foo/bar/bar", False, True),
    (["/*/*/bar/test.*", "*.go"], "/foo/bar/test.go", True, True),
    (["", "*.c"], "/foo/bar/test.go", False, True),
    (["!**", "*.go"], "/foo/bar/test.go", True, True),
    (["!**", "*.c"], "/foo/bar/test.go", False, True),
    (["/foo/*/test.*", "!*.c"], "/foo/bar/test.c", False, False),
    (["/foo/*/test.*", "!*.c"], "/foo/bar/test.go", True, True),
    (["/foo/*/*", "!test.*", "*.c"], "/foo/bar/test.go", False, True),
    (["/foo/*/*", "!test.*", "*.c"], "/foo/bar/test.c", True, True),
    (["/foo/*/*", "!test.*", "*.c"], "/foo/bar/file.go", True, True),
    (["/**/*", "!/foo", "/foo/*", "!/foo/bar"], "/foo/other/test.go", True, True),
    (["/**/*", "!/foo", "/foo/*", "!/foo/bar"], "/foo/bar", False, False),
    (["/**/*", "!/foo", "/foo/*", "!/foo/bar"], "/foo/bar/test.go", False, False),
    (["/**/*", "!/foo", "/foo/*", "!/foo/bar"], "/foo/bar/test.go/child", False, False),
    (["/**/*", "!/foo", "/foo/*", "!/foo/bar", "/foo/bar/test*"], "/foo/bar/test.go/child", True, True),
    (["/foo/bar/*"], "/foo", False, True),
    (["/foo/bar/*", "!/foo/bar/[a-m]*"], "/foo", False, True),
    (["/foo/**/test.c"], "/foo/bar/foo/bar/test.c", True, True),
    (["/foo/*/test.c"], "/foo/bar/foo/bar/test.c", False, False),
    (["*.c", "*.go"], "/home/user/file.go", True, True),  # ExampleList
]


@pytest.mark.parametrize("pattern,path,expected", MATCH_TESTS)
def test_restic_match_table(pattern, path, expected):
    assert match(pattern, path) is expected
    assert pm._Pattern(pattern, pattern).ref_match(path) is expected  # the port agrees


@pytest.mark.parametrize("pattern,path,expected", CHILD_MATCH_TESTS)
def test_restic_child_match_table(pattern, path, expected):
    assert child(pattern, path) is expected
    assert pm._Pattern(pattern, pattern).ref_child(path) is expected


@pytest.mark.parametrize("patterns,path,matched,child_may", LIST_TESTS)
def test_restic_list_table(patterns, path, matched, child_may):
    pl = PatternList(patterns)
    assert pl.matches(path) is matched
    assert pl.child_may_match(path) is child_may


# --- invalid patterns -------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    ["[", "test/[", "test/**/[", "a\\", "[]a]", "[^]", "[a-]", "[-a]", "[a-b-c]", "[b][", "![", "x/[a"],
)
def test_invalid_pattern(pattern):
    with pytest.raises(InvalidPatternError) as exc:
        PatternList(["ok", pattern])
    assert isinstance(exc.value, UsageError)
    assert str(exc.value) == f"invalid pattern(s) provided:\n{pattern}"
    assert exc.value.patterns == [pattern]


def test_invalid_pattern_listed_once_per_bad_component_like_restic_014():
    with pytest.raises(InvalidPatternError) as exc:
        PatternList(["[/[", "x[", "fine"])
    assert str(exc.value) == "invalid pattern(s) provided:\n[/[\n[/[\nx["


def test_invalid_byte_in_class_is_invalid():
    with pytest.raises(InvalidPatternError):
        PatternList(["[\udcff]"])
    with pytest.raises(InvalidPatternError):  # validated before lower-casing
        PatternList(["[\udcff]"], case_insensitive=True)


# Odd but valid patterns: what each matches and what not, as paths relative to a directory
# ("" is the directory itself). test_valid_odd_patterns_match_restic checks these against restic.
ODD_VALID_PATTERNS = {
    "[z-a]": ([], ["a", "z", "m", "-"]),  # an inverted range is empty
    "[\\]]": (["]"], ["\\", "[", "a", "a]b"]),
    "[a\\-z]": (["a", "-", "z"], ["m", "a-z", "\\"]),  # an escaped '-' is no range
    "a]b": (["a]b"], ["ab", "a", "b"]),  # a ']' outside a class is literal
    "\\*": (["*"], ["\\*", "\\", "a"]),
    "[*]": (["*"], ["a", "ab", "\\*"]),
    "[[]": (["["], ["a[", "]", "a"]),
    "[^^]": (["a", "-", "*", "[", "]", "\\", "!", "sub/b", "sub/q"], ["^", "aa", "a-z", "sub"]),
    "a[/../b": (["b", "sub/b"], ["a[", "a", "ab", "sub", "sub/q"]),  # cleaned to "b" first
    "**": (["", "a", "sub", "sub/b"], []),
    "/": (["", "a", "sub", "sub/b"], []),  # "/" then "**": every absolute path
    "!": ([], ["", "a", "!", "sub", "sub/b"]),  # negates ".", which matched nothing
    ".": ([], ["", "a", "sub", "sub/b"]),  # only a "." component, never in a clean path
}
ODD_TREE = ["a", "z", "m", "-", "]", "[", "*", "^", "!", "b", "ab", "aa", "a]b", "a[", "a-z", "\\", "\\*",
            "sub/b", "sub/q"]


@pytest.mark.parametrize("pattern", list(ODD_VALID_PATTERNS))
def test_valid_odd_patterns(pattern):
    matched, unmatched = ODD_VALID_PATTERNS[pattern]
    pl = PatternList([pattern])
    for rel in matched:
        assert pl.matches(f"/data/{rel}".rstrip("/")), f"{pattern!r} should match {rel!r}"
    for rel in unmatched:
        assert not pl.matches(f"/data/{rel}".rstrip("/")), f"{pattern!r} should not match {rel!r}"


# --- edge cases ---------------------------------------------------------------------------


def test_empty_things():
    assert not PatternList([])
    assert PatternList([""])  # counts as given (restic's len(opts.Excludes) > 0) ...
    assert not PatternList([""]).matches("/a")  # ... but never matches
    assert not PatternList([""]).child_may_match("/a")
    assert not PatternList(["*"]).matches("")  # restic: "filter.Match: string is empty"
    assert not PatternList(["*"]).child_may_match("")


def test_negation_last_match_wins():
    pl = PatternList(["*.log", "!keep.log", "keep.log"])
    assert pl.matches("/x/keep.log")
    pl = PatternList(["*.log", "keep.log", "!keep.log"])
    assert not pl.matches("/x/keep.log")
    assert pl.matches("/x/other.log")
    assert not PatternList(["!*.log"]).matches("/x/a.log")  # a lone negation matches nothing
    pl = PatternList(["!keep.log", "*.log"])  # a negation only undoes earlier patterns
    assert pl.matches("/x/keep.log")
    # a negated pattern un-matching a directory does not un-match its children
    pl = PatternList(["photos", "!photos/img1.jpg"])
    assert pl.matches("/d/photos")
    assert not pl.matches("/d/photos/img1.jpg")  # (restic never looks: photos is skipped)
    pl = PatternList(["/d/**", "!/d/keep"])
    assert not pl.matches("/d/keep")
    assert not pl.matches("/d/keep/sub")  # '!/d/keep' matches everything below too
    assert pl.matches("/d/other")


def test_negation_and_child():
    pl = PatternList(["/data/*", "!/data/tmp"])
    assert pl.child_may_match("/data")
    assert not pl.child_may_match("/data/tmp")
    assert pl.child_may_match("/data/other")
    assert not pl.child_may_match("/elsewhere")


def test_trailing_slash_is_ignored():
    for pat in ("cache/", "cache//", "cache/."):
        assert match(pat, "/x/cache")  # a file named cache too: no directory-only rule
        assert match(pat, "/x/cache/f")
        assert not match(pat, "/x/cachex")
    assert match("/x/", "/x")
    assert match("/x/", "/x/y")


def test_root_and_dot_patterns():
    assert match("/", "/anything/at/all")  # "/" cleans to parts ["/", ""]: "" is '**'
    assert match("!/", "/a") is False
    assert not match("/", "relative/path")
    assert not match(".", "/a/b")  # Clean("") and "." only match a "." component
    assert match(".", "a/./b")
    assert match("a/..", "/x/.")  # cleans to "."


def test_double_star_positions():
    # start
    assert match("**/deep", "/x/y/deep")
    assert match("**/deep", "/deep")
    assert match("**/deep", "/x/deep/z")
    assert not match("**/deep", "/x/deeper")
    assert match("/**/deep", "/deep")
    assert match("/**/deep", "/a/b/deep/c")
    # middle
    assert match("/a/**/b", "/a/b")
    assert match("/a/**/b", "/a/x/y/b")
    assert match("/a/**/b", "/a/x/y/b/z")
    assert not match("/a/**/b", "/x/a/b")
    assert match("a/**/b", "/x/a/q/b")
    # end
    assert match("/a/**", "/a")
    assert match("/a/**", "/a/b/c")
    assert not match("/a/**", "/ab")
    assert match("a/**", "/x/a")
    # alone
    assert match("**", "/")
    assert match("**", "x")
    # '**' inside a component is just two '*'
    assert match("a**b", "/x/aqqb")
    assert not match("a**b", "/x/aq/qb")


def test_two_double_stars_are_bounded_like_restic():
    # restic expands the first '**' at most len(path)-len(pattern)+1 times, counting the
    # second '**' as a component: a trailing '/**' then needs one more path component.
    assert not match("/a/**/b/**", "/a/x/b")
    assert match("/a/**/b/**", "/a/x/b/c")
    assert not match("/a/**/b/**", "/a/b")
    assert match("/a/**/b/**", "/a/b/c")
    assert match("/a/**/b", "/a/x/b")
    assert not match("/a/**/**/b", "/a/b")
    assert match("/a/**/**/b", "/a/x/b")
    assert match("foo/**/bar/**/x", "/home/user/foo/bar/x")
    assert not match("foo/**/bar/**/x", "foo/bar/x")  # relative path: no "/" slot to spare


def test_star_question_marks_see_bytes_like_go():
    # Go's '*' advances byte by byte, so '??' after it can match the two trailing bytes of a
    # three-byte character: restic excludes "Z€" with 'Z*??' but not "Zé".
    assert match("Z*??", "/d/Z\u20ac")
    assert not match("Z*??", "/d/Z\u00e9")
    assert match("Z*??", "/d/Zab")
    assert not match("Z*??", "/d/Za")
    assert match("*[^x]", "/d/\u20ac")
    # an undecodable byte in a pattern can match the first byte of a character
    assert match("Z\udcc3?", "/d/Z\u00e9")
    assert not match("Z\udcc3?", "/d/Zab")


def test_character_classes():
    assert match("[a-c]x", "/bx")
    assert not match("[a-c]x", "/dx")
    assert match("[^a-c]x", "/dx")
    assert not match("[z-a]", "/a")  # empty range: valid, matches nothing
    assert match("[^z-a]", "/a")
    assert match("[\\]]", "/]")
    assert match("[a\\-z]", "/-")
    assert not match("[a\\-z]", "/b")
    assert match("[!]x", "/!x")  # no '!' negation inside classes
    assert match("[*?]", "/*")
    assert match("a]b", "/a]b")
    assert match("\\*", "/*")
    assert not match("\\*", "/x")
    assert not match("[!-0]", "/a/")  # a class never matches the separator...
    assert match("[!-0]", "/a/0")
    assert match("a[^x]b", "/a\u00e9b")  # ... and takes one whole character
    assert match("[\u00e0-\u00ff]", "/\u00e9")
    assert match("?", "/\u20ac")
    assert not match("??", "/\u20ac")


def test_case_insensitive():
    pl = PatternList(["*.LOG", "/Data/Photos"], case_insensitive=True)
    assert pl.matches("/x/a.log")
    assert pl.matches("/x/A.Log")
    assert pl.matches("/DATA/photos/x.jpg")
    assert pl.child_may_match("/other")  # "*.LOG" may match anywhere below
    pl = PatternList(["/Data/Photos"], case_insensitive=True)
    assert pl.child_may_match("/data")
    assert not pl.child_may_match("/other")
    assert not PatternList(["*.LOG"]).matches("/x/a.log")
    # Go's simple case mapping: 'İ' lowers to 'i', a final 'Σ' to 'σ'
    assert match("i.txt", "/\u0130.txt", ci=True)
    assert match("\u03b1\u03c3", "/\u0391\u03a3", ci=True)
    assert match("\u0130", "/i", ci=True)
    # undecodable bytes become U+FFFD on both sides
    assert match("caf\ufffd.txt", "/caf\udce9.txt", ci=True)
    assert not match("caf\ufffd.txt", "/caf\udce9.txt")
    assert match("caf\udce9.txt", "/caf\udcff.txt", ci=True)
    assert match("caf?.txt", "/CAF\udce9.txt", ci=True)


def test_undecodable_names():
    name = "/d/caf\udce9.txt"
    assert match("caf?.txt", name)
    assert match("caf*", name)
    assert match("caf\udce9.txt", name)
    assert not match("caf\udce8.txt", name)
    assert match("caf[\ufffd].txt", name)  # Go decodes the byte as U+FFFD
    assert not match("caf[^\ufffd].txt", name)
    assert not match("caf[a-z].txt", name)
    assert match("caf[^a-z].txt", name)
    assert not match("caf[\u0001-\U0010ffff].txt", "/d/caf.txt")
    assert match("caf[\u0001-\U0010ffff].txt", name)  # the range holds U+FFFD


def test_relative_paths():
    assert match("b", "a/b/c")
    assert match("a", "a/b")
    assert match("*/b", "a/b")
    assert not match("/a", "a/b")
    assert not child("/a", "a")
    assert child("b", "a")


# --- the regex fast path agrees with the port of restic's algorithm ------------------------

_COMPONENTS = ["a", "b", "ab", "*", "?", "[ab]", "[^a]", "a*", "*b", "**", "**", "\u00e9", "\u20ac",
               "*?", "?*", "*??", "a?b", "[a-z]*", "\udce9", "*\u20ac", "."]
_NAMES = ["a", "b", "ab", "ba", "aab", "\u00e9", "\u20ac", "a\u20ac", "\u20acb", "", "\udce9", "x\u00e9b"]


def _random_pattern(rng):
    pat = "/".join(rng.choice(_COMPONENTS) for _ in range(rng.randint(1, 4)))
    if rng.random() < 0.4:
        pat = "/" + pat
    if rng.random() < 0.1:
        pat += "/"
    return pat


def _random_path(rng):
    path = "/".join(rng.choice(_NAMES[:-3] if i == 0 else _NAMES) for i in range(rng.randint(1, 5)))
    return path if rng.random() < 0.15 else "/" + path


def _reference_list(patterns, path):
    """filter.list, on the faithful port."""
    matched = child_may = False
    for pat in patterns:
        m, c = pat.ref_match(path), pat.ref_child(path)
        if pat.negated:
            matched, child_may = matched and not m, child_may and not m
        else:
            matched, child_may = matched or m, child_may or c
    return matched, child_may


def test_fast_path_agrees_with_reference_single():
    rng = random.Random(20240514)
    for _ in range(8000):
        pat, path = _random_pattern(rng), _random_path(rng)
        p = pm._Pattern(pat, pat)
        pl = PatternList([pat])
        assert pl.matches(path) is p.ref_match(path), (pat, path)
        assert pl.child_may_match(path) is p.ref_child(path), (pat, path)


def test_fast_path_agrees_with_reference_lists():
    rng = random.Random(7)
    for _ in range(1500):
        pats = [("!" if rng.random() < 0.3 else "") + _random_pattern(rng) for _ in range(rng.randint(1, 5))]
        pl = PatternList(pats)
        refs = [pm._Pattern(p, p) for p in pats]
        for _ in range(5):
            path = _random_path(rng)
            assert (pl.matches(path), pl.child_may_match(path)) == _reference_list(refs, path), (pats, path)


# --- exclude files --------------------------------------------------------------------------


def test_read_pattern_file(tmp_path, monkeypatch):
    monkeypatch.setenv("EXCL_NAME", "run.sh")
    monkeypatch.setenv("FOO", "foo")
    monkeypatch.delenv("UNSET_VAR", raising=False)
    f = tmp_path / "excludes.txt"
    f.write_bytes(
        b"# a comment\n\n  *.bin  \n$EXCL_NAME\nphotos\n!photos/img1.jpg\n"
        b"\t # indented comment\n   \n"
        b"A${}B\nC${D\nE$-F\nG$%H\nI$$J\nK${1}L\nM$1N\nO${FOO}P\nQ$UNSET_VAR\nR$ x\nS${!}\nT$\n"
        b"crlf\r\n\x1cnot-go-space\x1c\n\xc2\xa0nbsp\xc2\xa0\ncaf\xe9\nlast-no-newline"
    )
    assert read_pattern_file(str(f)) == [
        "*.bin", "run.sh", "photos", "!photos/img1.jpg",
        "AB", "CD", "EF", "G$%H", "I$J", "KL", "MN", "OfooP", "Q", "R$ x", "S", "T$",
        "crlf", "\x1cnot-go-space\x1c", "nbsp", "caf\udce9", "last-no-newline",
    ]


def test_read_pattern_file_boms(tmp_path):
    f = tmp_path / "bom8"
    f.write_bytes(b"\xef\xbb\xbfone\ntwo\n")
    assert read_pattern_file(str(f)) == ["one", "two"]
    f = tmp_path / "utf16le"
    f.write_bytes("\ufeffY[\r\nZ\u00e9\n".encode("utf-16-le"))
    assert read_pattern_file(str(f)) == ["Y[", "Z\u00e9"]
    f = tmp_path / "utf16be"
    f.write_bytes("\ufeffbig\n".encode("utf-16-be"))
    assert read_pattern_file(str(f)) == ["big"]


def test_read_pattern_file_errors(tmp_path):
    missing = tmp_path / "missing.txt"
    with pytest.raises(UsageError, match=r"^open .*/missing\.txt: no such file or directory$"):
        read_pattern_file(str(missing))
    with pytest.raises(UsageError, match=r"^read .*: is a directory$"):
        read_pattern_file(str(tmp_path))
    long = tmp_path / "long"
    long.write_bytes(b"a" * 65535 + b"\n")
    assert read_pattern_file(str(long)) == ["a" * 65535]
    for data in (b"a" * 65536 + b"\n", b"a" * 65535 + b"\r\n"):
        long.write_bytes(data)
        with pytest.raises(UsageError, match=r"^bufio\.Scanner: token too long$"):
            read_pattern_file(str(long))


def test_expand_matches_go():
    env = {"A": "x", "$": "$"}
    exp = lambda s: pm._go_expand(s, lambda n: env.get(n, ""))  # noqa: E731
    assert exp("$A/${A}/$A_B/${A}_B") == "x/x//x_B"
    assert exp("$") == "$"
    assert exp("a$") == "a$"
    assert exp("${") == ""
    assert exp("${A") == "A"
    assert exp("$$") == "$"
    assert exp("${*}") == ""


# --- against the real restic ---------------------------------------------------------------


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(os.fsencode(os.path.basename(path)))


TREE = [
    "a.log", "b.txt", "notes.LOG", "run.sh", "big.bin",
    "docs/readme.txt", "docs/notes/todo.md", "docs/notes/deep/a.txt", "docs/other/deep.txt",
    "photos/img1.jpg", "photos/IMG2.JPG", "photos/new.png",
    "cache/CACHEDIR.TAG", "cache/x.bin",
    "build/out/x.o", "build/out/y.c", "build/src/y.c",
    "a/x/b/c", "a/x/b/d/e", "a/b/f",
    "dir with space/f g.txt",
    "Z\u20ac", "Z\u00e9", "Zab", "Za",
    "caf\udce9.txt", "\u0130.txt", "\u0391\u03a3",
    "weird[name].txt", "star*name", "q?.txt",
    ".git/config", "sub/.git/HEAD", "sub/keep.txt",
    "node_modules/m/index.js",
]


@pytest.fixture
def tree(tmp_path):
    root = str(tmp_path / "src")
    for rel in TREE:
        _touch(os.path.join(root, rel))
    os.makedirs(os.path.join(root, "emptydir"))
    return root


def _walk_kept(root, excluded):
    """What restic's archiver keeps: it never descends into an excluded directory."""
    kept = set()

    def visit(path):
        if excluded(path):
            return
        kept.add(path)
        if os.path.isdir(path) and not os.path.islink(path):
            for entry in os.scandir(path):
                visit(os.path.join(path, entry.name))

    visit(root)
    return kept


def _ls_latest(repo, root):
    out = run_restic(repo, "ls", "latest").stdout.split(b"\n")[1:]
    paths = {os.fsdecode(line) for line in out if line}
    return {p for p in paths if p == root or p.startswith(root + "/")}


def _backup_cases(root, tmp_path):
    exclude_file = tmp_path / "excludes.txt"
    exclude_file.write_bytes(
        b"# a comment\n\n  *.bin  \n$EXCL_NAME\nphotos\n!photos/img1.jpg\ndocs/*\n!docs/readme.txt\n"
    )
    iexclude_file = tmp_path / "iexcludes.txt"
    iexclude_file.write_bytes(
        b"*.JPG\n  /" + os.fsencode(root).upper() + b"/BUILD/*/Y.C\n!" + os.fsencode(root) + b"/build/SRC\n"
    )
    return [
        ["--exclude", "*.log", "--exclude", "photos/*.jpg"],
        ["--iexclude", "*.LOG", "--iexclude", "*.jpg", "--iexclude", "i.txt",
         "--iexclude", "\u03b1\u03c3", "--iexclude", "caf\ufffd.txt"],
        ["--exclude", root + "/docs/notes", "--exclude", "**/deep", "--exclude", "cache/",
         "--exclude", root + "/a/**/b/**"],
        ["--exclude", "photos/*", "--exclude", "!photos/img1.jpg", "--exclude", "docs",
         "--exclude", "!docs/readme.txt", "--exclude", "build/*/*", "--exclude", "!*.c"],
        ["--exclude", "Z*??", "--exclude", "caf[^x].txt", "--exclude", "weird\\[name\\].txt",
         "--exclude", "star\\*name", "--exclude", "**/.git/**", "--exclude", "/**/node_modules"],
        ["--exclude", root + "/*/out", "--exclude", "x/*/e", "--exclude", "*[A-Z]*.*",
         "--exclude", "q[?].txt", "--exclude", "*/f", "--exclude", root + "/emptydir/"],
        ["--exclude-file", str(exclude_file), "--exclude", "b.txt"],
        ["--iexclude-file", str(iexclude_file), "--exclude", "x.o", "--iexclude", "!Y.C"],
    ]


def _excluder(args):
    """Build restic 0.14's reject-by-name predicate from backup flags, with this module."""
    ex, iex = [], []
    it = iter(args)
    files, ifiles = [], []
    for flag in it:
        value = next(it)
        {"--exclude": ex, "--iexclude": iex, "--exclude-file": files, "--iexclude-file": ifiles}[flag].append(value)
    for f in files:
        ex += read_pattern_file(f)
    for f in ifiles:
        iex += read_pattern_file(f)
    sensitive, insensitive = PatternList(ex), PatternList(iex, case_insensitive=True)
    return lambda p: insensitive.matches(p) or sensitive.matches(p)


def test_backup_excludes_match_restic(restic_repo, tree, tmp_path, monkeypatch):
    monkeypatch.setenv("EXCL_NAME", "run.sh")  # for read_pattern_file, and passed to restic
    everything = _walk_kept(tree, lambda p: False)
    failures = []
    for args in _backup_cases(tree, tmp_path):
        run_restic(restic_repo, "backup", *args, tree, env=clean_env(EXCL_NAME="run.sh"))
        got = _ls_latest(restic_repo, tree)
        expected = _walk_kept(tree, _excluder(args))
        assert tree in expected and expected != everything, f"case excludes nothing/everything: {args}"
        if got != expected:
            failures.append(f"{args}\n  restic only: {sorted(got - expected)}\n  ours only: {sorted(expected - got)}")
    assert not failures, "\n".join(failures)


def test_valid_odd_patterns_match_restic(restic_repo, tmp_path):
    """restic's `backup --exclude` with each odd pattern keeps what ODD_VALID_PATTERNS says."""
    root = str(tmp_path / "src")
    for rel in ODD_TREE:
        _touch(os.path.join(root, rel))
    failures = []
    for pattern, (matched, unmatched) in ODD_VALID_PATTERNS.items():
        out = run_restic(restic_repo, "backup", "--json", "--exclude", pattern, root).stdout
        (snapshot_id,) = [json.loads(l)["snapshot_id"] for l in out.splitlines() if b'"summary"' in l]
        listed = run_restic(restic_repo, "ls", snapshot_id).stdout.split(b"\n")[1:]
        got = {p for p in map(os.fsdecode, listed) if p == root or p.startswith(root + "/")}
        for rel, wanted in [(r, False) for r in matched] + [(r, True) for r in unmatched]:
            path = os.path.join(root, rel).rstrip("/")
            if (path in got) != wanted:
                failures.append(f"{pattern!r}: restic {'drops' if wanted else 'keeps'} {rel!r}")
        expected = _walk_kept(root, PatternList([pattern]).matches)
        if got != expected:
            failures.append(f"{pattern!r}\n  restic only: {sorted(got - expected)}\n  ours only: {sorted(expected - got)}")
    assert not failures, "\n".join(failures)


def _expected_restore(root, matches, child_may_match, mode):
    """What restic 0.14's restorer writes for a snapshot of root, under the target."""
    present = set()
    chain = []
    head = root
    while head != "/":
        chain.append(head)
        head = os.path.dirname(head)
    chain.reverse()  # /tmp, /tmp/..., root

    def select(path, is_dir):
        if mode == "include":
            return matches(path), child_may_match(path) and is_dir
        selected = not matches(path)
        return selected, selected and is_dir

    def visit(path, depth):
        is_dir = depth < len(chain) - 1 or os.path.isdir(path)
        selected, descend = select(path, is_dir)
        restored = selected
        if descend:
            names = [os.path.basename(chain[depth + 1])] if depth < len(chain) - 1 else os.listdir(path)
            for name in names:
                restored |= visit(os.path.join(path, name), depth + 1)
        if restored:
            present.add(path)
        return restored

    visit(chain[0], 0)
    return present


def test_restore_includes_match_restic(restic_repo, tmp_path):
    root = str(tmp_path / "src")
    for rel in TREE:
        if "\udce9" not in rel:  # 0.14 stores undecodable names as U+FFFD
            _touch(os.path.join(root, rel))
    run_restic(restic_repo, "backup", root)
    cases = [
        ("include", ["*.txt"], False),
        ("include", [root + "/docs/notes"], False),
        ("include", [root + "/a/**/b/**"], False),
        ("include", ["/**/deep"], False),
        ("include", [root + "/build/*", "!*.c"], False),
        ("include", [root + "/photos/*", "!" + root + "/photos/new.png"], False),
        ("include", [root + "/docs/*/todo.md", root + "/[a-b]*/x"], False),
        ("include", ["*.JPG", root.upper() + "/SUB"], True),
        ("exclude", ["docs", "!docs/readme.txt", "*.jpg"], False),
    ]
    failures = []
    for n, (mode, pats, ci) in enumerate(cases):
        target = tmp_path / f"restore{n}"
        flag = ("--i" if ci else "--") + mode
        args = [a for p in pats for a in (flag, p)]
        run_restic(restic_repo, "restore", "latest", "--target", target, *args)
        got = set()
        for dirpath, dirnames, filenames in os.walk(target):
            for name in dirnames + filenames:
                got.add(os.path.join(dirpath, name)[len(str(target)):])
        pl = PatternList(pats, case_insensitive=ci)
        expected = _expected_restore(root, pl.matches, pl.child_may_match, mode)
        assert any(p.startswith(root + "/") for p in expected), f"case restores nothing: {pats}"
        if got != expected:
            failures.append(f"{mode} {pats}\n  restic only: {sorted(got - expected)}\n  ours only: {sorted(expected - got)}")
    assert not failures, "\n".join(failures)
