"""Analysis tools for residual networks: layer table, lesion study, branch responses, paths.

Command line: ``tools/analyze.py {summary,lesion,responses,paths,degradation}``; see
``detection/analysis/README.md``. Everything here is importable:

    from detection.analysis import lesioned, lesion_study, DetectorAP50
    with lesioned(model, ["backbone.res3.1"]):
        ...
"""
from .common import (DetectorAP50, block_kind, load_model, paper_name, residual_blocks, test_batches,
                     trunk_input)
from .lesion import deletion_pool, lesion_forward, lesion_study, lesioned, sample_subsets
from .paths import (PathForward, block_chain, chain_input, effective_paths, path_analysis, path_gradients,
                    path_length_distribution)
from .responses import branch_responses
from .summary import backbone_summary, conv_macs, detector_summary, format_summary, linear_macs, summarize_cfg

__all__ = [
    "DetectorAP50", "PathForward", "backbone_summary", "block_chain", "block_kind", "branch_responses",
    "chain_input", "conv_macs", "deletion_pool", "detector_summary", "effective_paths", "format_summary",
    "lesion_forward", "lesion_study", "lesioned", "linear_macs", "load_model", "paper_name",
    "path_analysis", "path_gradients", "path_length_distribution", "residual_blocks", "sample_subsets",
    "summarize_cfg", "test_batches", "trunk_input",
]
