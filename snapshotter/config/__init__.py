"""The YAML configuration (a public contract: see config.example.yaml): what it holds
(``model``), how a file is read (``load``) and checked (``parse``, ``accounts``, ``keys``,
``problems``): every problem is one line naming the file and key at fault."""

from snapshotter.config.load import load_config
from snapshotter.config.model import (
    AUTH_MODES,
    DEFAULT_API_ROOT,
    DEFAULT_BASE_URL,
    DEFAULT_CONFIG_PATH,
    DEFAULT_DATABASE_URL,
    AccountConfig,
    CalendarConfig,
    Config,
    ImportConfig,
    KiteConfig,
    NotifyConfig,
    ScheduleConfig,
    Secret,
    default_state_dir,
    resolve_config_path,
)
from snapshotter.config.parse import parse_config

__all__ = [
    "AUTH_MODES",
    "DEFAULT_API_ROOT",
    "DEFAULT_BASE_URL",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_DATABASE_URL",
    "AccountConfig",
    "CalendarConfig",
    "Config",
    "ImportConfig",
    "KiteConfig",
    "NotifyConfig",
    "ScheduleConfig",
    "Secret",
    "default_state_dir",
    "load_config",
    "parse_config",
    "resolve_config_path",
]
