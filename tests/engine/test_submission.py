"""engine.submission: a Kaggle-style ID,Labels CSV checked against the pickle's IDs."""

from engine.submission import check_submission, ids_problem

IDS = [907, 12, 5000, 3, 44]  # shuffled, not contiguous, as competition files are


def write(tmp_path, text):
    p = tmp_path / "sub.csv"
    p.write_text(text)
    return str(p)


def rows(pairs):
    return "ID,Labels\n" + "".join(f"{i},{lab}\n" for i, lab in pairs)


def test_a_valid_submission(tmp_path):
    assert check_submission(write(tmp_path, rows([(i, 3) for i in reversed(IDS)])), IDS) == []


def test_each_kind_of_problem_is_named(tmp_path):
    assert check_submission(write(tmp_path, rows([(i, 1) for i in IDS[:-1]])), IDS) == ["ID 44 of the pickle is missing"]
    dup = check_submission(write(tmp_path, rows([(i, 1) for i in IDS] + [(12, 2)])), IDS)
    assert dup == ["ID 12 appears twice (lines 3 and 7)"]
    extra = check_submission(write(tmp_path, rows([(i, 1) for i in IDS] + [(77, 2)])), IDS)
    assert extra == ["ID 77 (line 7) is not an ID of the pickle"]
    header = check_submission(write(tmp_path, "id,label\n" + rows([(i, 1) for i in IDS])[10:]), IDS)
    assert header == ["the header is 'id,label'; it must be exactly ID,Labels"]
    labels = check_submission(write(tmp_path, rows([(907, 10), (12, -1), (5000, "cat"), (3, 1), (44, 2)])), IDS)
    assert len(labels) == 3 and all("is not a class index 0-9" in p for p in labels)


def test_many_problems_are_counted_not_listed(tmp_path):
    ids = list(range(100))
    problems = check_submission(write(tmp_path, rows([(0, 1)])), ids)
    assert problems[:3] == ["ID 1 of the pickle is missing", "ID 2 of the pickle is missing",
                            "ID 3 of the pickle is missing"]
    assert problems[3] == "... and 96 more missing IDs" and len(problems) == 4


def test_unreadable_files(tmp_path):
    assert check_submission(str(tmp_path / "none.csv"), IDS) == [f"{tmp_path / 'none.csv'} does not exist"]
    assert "empty" in check_submission(write(tmp_path, ""), IDS)[0]


def test_ids_problem():
    assert ids_problem(IDS, 5) is None
    assert "5 IDs for 4 images" in ids_problem(IDS, 4)
    assert "ID 12 appears more than once" in ids_problem([1, 12, 12], 3)
    assert "not all whole numbers" in ids_problem([1, "a", 3], 3)
