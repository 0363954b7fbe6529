"""Truncation: the token windows a text is read in when it is longer than max_length, the same for training,
evaluation and prediction.

>>> windows(list(range(10)), 4, "head_tail")
[[0, 7, 8, 9]]
"""

from __future__ import annotations

from llmclf.errors import UserError

TRUNCATION_CHOICES = ("head", "head_tail", "chunks")
# The most accurate mode on IMDb validation reviews at both 256 and 512 tokens (bench/truncation.py, README).
DEFAULT_TRUNCATION = "chunks"
# A token spans at most a few dozen characters, so cutting a huge text to this many characters per token of
# max_length first keeps every token that head/head_tail truncation could keep, without tokenizing megabytes.
CHARS_PER_TOKEN_BOUND = 64


def windows(ids: list[int], max_length: int, truncation: str, prefix: list[int] = (),
            max_chunks: int = 32, suffix: list[int] = ()) -> list[list[int]]:
    """The token windows a text is classified from; `prefix` (special tokens, a prompt template's start) and
    `suffix` (the template's end) are kept whole in each window: only the text's ids are cut.

    `chunks` cuts overlapping windows; past `max_chunks` of them (a text of ~12k tokens at max_length 512),
    `max_chunks` windows spread evenly from start to end stand for the whole, so one huge text cannot stall
    a batch or a server.

    >>> windows(list(range(10)), 4, "head")
    [[0, 1, 2, 3]]
    >>> windows(list(range(10)), 4, "head_tail")
    [[0, 7, 8, 9]]
    >>> windows(list(range(10)), 4, "chunks")
    [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    """
    room = max_length - len(prefix) - len(suffix)
    if room < 1:
        raise UserError(f"--max-length {max_length} leaves no room for text after {len(prefix) + len(suffix)} "
                        "special or prompt-template token(s); raise --max-length or shorten the template.")
    prefix, suffix = list(prefix), list(suffix)
    if len(ids) <= room:
        return [prefix + ids + suffix]
    if truncation == "head":
        return [prefix + ids[:room] + suffix]
    if truncation == "head_tail":  # the start sets the topic, the end often holds the verdict
        head = room // 4
        return [prefix + ids[:head] + ids[len(ids) - (room - head):] + suffix]
    if truncation == "chunks":
        step = max(1, room - room // 4)  # windows overlap by a quarter
        starts = list(range(0, len(ids) - room, step)) + [len(ids) - room]
        if len(starts) > max_chunks:
            starts = [starts[round(i * (len(starts) - 1) / (max_chunks - 1))] for i in range(max_chunks)]
        return [prefix + ids[s : s + room] + suffix for s in starts]
    raise UserError(f"--truncation must be one of {', '.join(TRUNCATION_CHOICES)}, got {truncation!r}.")
