"""Command-line plumbing shared by the tools: argument parsing, config, logging, distributed setup."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from detection.config import load_config
from detection.utils import comm
from detection.utils.logger import setup_logger
from detection.utils.seed import seed_all

logger = logging.getLogger("detection")


def default_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "--config-file", dest="config", default="", metavar="FILE", help="YAML config")
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                   help="config overrides, e.g. MODEL.RESNETS.DEPTH 50 SOLVER.BASE_LR 0.01")
    return p


def relaunch_with_torchrun(num_procs: int) -> None:
    """``--num-gpus N``: start N processes through torchrun's own launcher, then exit."""
    from torch.distributed.run import main as torchrun

    argv = [a for a in sys.argv[1:]]
    i = argv.index("--num-gpus")
    del argv[i: i + 2]
    torchrun(["--standalone", f"--nproc_per_node={num_procs}", sys.argv[0], *argv])
    sys.exit(0)


def setup(args, *, output_subdir: str = "") -> "object":
    """Config from --config and KEY VALUE pairs, the process group (under torchrun), logging, seed."""
    cfg = load_config(args.config or None, args.opts)
    cfg.MODEL.DEVICE = comm.init_distributed(cfg.MODEL.DEVICE)
    out_dir = os.path.join(cfg.OUTPUT_DIR, output_subdir) if output_subdir else cfg.OUTPUT_DIR
    setup_logger(out_dir)
    seed = seed_all(cfg.SEED + comm.get_rank() if cfg.SEED >= 0 else cfg.SEED)
    logger.info("rank %d/%d, device %s, seed %d", comm.get_rank(), comm.get_world_size(), cfg.MODEL.DEVICE, seed)
    return cfg
