"""A competition submission (``ID,Labels``) checked against the IDs it must answer.

The course's Kaggle competition takes a CSV with the header ``ID,Labels`` and one row per
image of its unlabelled pickle (``b'data'``, ``b'ids'``): every ID of the pickle exactly
once, no other, each label a class index. :func:`check_submission` lists what is wrong, at
most a few problems of each kind and then a count, so a student sees the mistake before
the competition's scorer does. No torch here.
"""

from __future__ import annotations

import csv
import io
from typing import Iterable, Sequence

from .safeio import UnreadableFile, read_bytes

HEADER = ("ID", "Labels")
MAX_CSV_BYTES = 64 << 20
SHOWN = 3  # problems of one kind listed before "... and N more"


def check_submission(path: str, ids: Sequence[int], num_classes: int = 10) -> list[str]:
    """Problems of the submission at ``path`` against the pickle's ``ids`` (empty: it is valid)."""
    try:
        text = read_bytes(path, MAX_CSV_BYTES).decode("utf-8-sig")
    except FileNotFoundError:
        return [f"{path} does not exist"]
    except (OSError, UnreadableFile, UnicodeDecodeError) as e:
        return [f"{path} cannot be read as a CSV ({e})"]
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return [f"{path} is empty; the first line must be the header ID,Labels"]
    problems: list[str] = []
    header = tuple(c.strip() for c in rows[0])
    if header != HEADER:
        problems.append(f"the header is {','.join(rows[0])[:60]!r}; it must be exactly ID,Labels")
    bad_rows, bad_labels, seen, dup = [], [], {}, []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2:
            bad_rows.append(f"line {line} has {len(row)} fields, not 2")
            continue
        try:
            i = int(row[0])
        except ValueError:
            bad_rows.append(f"line {line}: ID {row[0][:20]!r} is not a whole number")
            continue
        try:
            label = int(row[1])
            if not 0 <= label < num_classes:
                raise ValueError
        except ValueError:
            bad_labels.append(f"line {line}: label {row[1][:20]!r} is not a class index 0-{num_classes - 1}")
        if i in seen:
            dup.append(f"ID {i} appears twice (lines {seen[i]} and {line})")
        else:
            seen[i] = line
    wanted = set(ids)
    missing = [i for i in ids if i not in seen]
    extra = [i for i in seen if i not in wanted]
    problems += _few(bad_rows, "malformed rows")
    problems += _few(bad_labels, "bad labels")
    problems += _few(dup, "repeated IDs")
    problems += _few([f"ID {i} of the pickle is missing" for i in missing], "missing IDs")
    problems += _few([f"ID {i} (line {seen[i]}) is not an ID of the pickle" for i in extra], "unknown IDs")
    return problems


def _few(items: list[str], what: str) -> list[str]:
    if len(items) <= SHOWN:
        return items
    return items[:SHOWN] + [f"... and {len(items) - SHOWN:,} more {what}"]


def ids_problem(ids: Iterable, n_images: int) -> str | None:
    """Why a pickle's IDs cannot be written as a submission's ``ID`` column (None: they can):
    whole numbers, one per image, none repeated."""
    ids = list(ids)
    if len(ids) != n_images:
        return f"the pickle has {len(ids):,} IDs for {n_images:,} images; give one ID per image"
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        return "the pickle's IDs are not all whole numbers"
    if len(set(ids)) != len(ids):
        seen, first = set(), None
        for i in ids:
            if i in seen:
                first = i
                break
            seen.add(i)
        return f"the pickle's IDs repeat (ID {first} appears more than once); each image needs its own ID"
    return None
