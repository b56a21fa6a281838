from .config import (CfgNode, ConfigError, config_from_dict, describe, get_default_config, load_config,
                     merge_from_list)

__all__ = ["CfgNode", "ConfigError", "config_from_dict", "describe", "get_default_config", "load_config",
           "merge_from_list"]
