import subprocess
import sys

import pytest

CHECK = "from lerobot.common.utils.utils import keep_freed_memory; print(keep_freed_memory())"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_applies_on_glibc_and_can_be_switched_off(monkeypatch):
    # In a child process: the setting lasts for the life of the process.
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True).stdout
    import platform

    assert out.strip() == str(platform.libc_ver()[0] == "glibc")
    monkeypatch.setenv("LEROBOT_KEEP_FREED_MEMORY", "0")
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
