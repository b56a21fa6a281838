from .config import CfgNode, ConfigError, describe, get_default_config, load_config, merge_from_list

__all__ = ["CfgNode", "ConfigError", "describe", "get_default_config", "load_config", "merge_from_list"]
