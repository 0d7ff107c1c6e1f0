import pytest

from lerobot.common.utils.utils import env_flag


@pytest.mark.parametrize(
    "value, default, expected",
    [
        (None, True, True),
        (None, False, False),
        ("1", False, True),
        (" Yes ", False, True),
        ("ON", False, True),
        ("0", True, False),
        ("false", True, False),
        ("Off", True, False),
        ("maybe", True, True),
        ("maybe", False, False),
        ("", True, True),
    ],
)
def test_env_flag(monkeypatch, value, default, expected):
    if value is None:
        monkeypatch.delenv("LEROBOT_TEST_FLAG", raising=False)
    else:
        monkeypatch.setenv("LEROBOT_TEST_FLAG", value)
    assert env_flag("LEROBOT_TEST_FLAG", default=default) is expected
