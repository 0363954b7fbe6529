"""Assertions shared by several test modules."""

import pytest

from llmclf.errors import UserError


def user_error(match, fn, *args, **kwargs) -> str:
    """fn(...) raises a UserError matching `match`, on one line; returns its message."""
    with pytest.raises(UserError, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)
