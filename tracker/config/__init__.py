"""Model and session configs: ``from tracker.config import Config, load_config``.

Three rooms, imported one way (schema <- validation <- loading):

- ``schema``: the typed, frozen dataclass tree, one class per YAML section, and the choices some keys allow;
- ``validation``: the checks a whole config passes, however it was made;
- ``loading``: YAML by name or path, embedded YAML text, dotted overrides.
"""

from tracker.config.loading import (
    CONFIG_DIR,
    available_configs,
    config_from_dict,
    config_from_yaml_text,
    load_config,
    parse_overrides,
    resolve_config_path,
    with_overrides,
)
from tracker.config.schema import (
    CE_TEMPLATE_RANGES,
    KNOWN_BACKBONES,
    NANOTRACK_STRIDE,
    STEMS,
    TEXT_ENCODERS,
    AugmentConfig,
    BackboneConfig,
    Config,
    CropConfig,
    DataConfig,
    DatasetsConfig,
    GroundingConfig,
    GroundingTrainConfig,
    HeadConfig,
    ModelConfig,
    PresenceConfig,
    RedetectConfig,
    ScaleFilterConfig,
    SchedulerConfig,
    TestConfig,
    TrackConfig,
    TrainConfig,
    grounding_network_keys,
)
from tracker.errors import ConfigError  # the error every step above raises, importable beside them

__all__ = [
    "CE_TEMPLATE_RANGES",
    "CONFIG_DIR",
    "KNOWN_BACKBONES",
    "NANOTRACK_STRIDE",
    "STEMS",
    "TEXT_ENCODERS",
    "AugmentConfig",
    "BackboneConfig",
    "Config",
    "ConfigError",
    "CropConfig",
    "DataConfig",
    "DatasetsConfig",
    "GroundingConfig",
    "GroundingTrainConfig",
    "HeadConfig",
    "ModelConfig",
    "PresenceConfig",
    "RedetectConfig",
    "ScaleFilterConfig",
    "SchedulerConfig",
    "TestConfig",
    "TrackConfig",
    "TrainConfig",
    "available_configs",
    "config_from_dict",
    "config_from_yaml_text",
    "grounding_network_keys",
    "load_config",
    "parse_overrides",
    "resolve_config_path",
    "with_overrides",
]
