"""The README documents every setting, so it stays true as settings are added."""

from ioc_core.settings import REPO_ROOT, Settings


def test_every_setting_is_documented() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    missing = [f"IOC_{name.upper()}" for name in Settings.model_fields if f"`IOC_{name.upper()}`" not in readme]
    assert missing == []
