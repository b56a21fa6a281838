"""A tiny detector on a tiny synthetic dataset: the config the engine and tools tests share."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "configs", "quickstart.yaml")

TINY_MODEL = [
    "MODEL.RESNETS.STAGE_BLOCKS", "[1, 1, 1, 1]", "MODEL.RESNETS.BLOCK", "basic",
    "MODEL.RESNETS.STEM_OUT_CHANNELS", "8", "MODEL.RESNETS.NORM", "GN", "MODEL.RESNETS.GN_GROUPS", "4",
    "MODEL.RESNETS.FREEZE_AT", "0", "MODEL.RESNETS.STRIDE_IN_1X1", "False",
    "MODEL.ANCHOR_GENERATOR.SIZES", "[16, 32, 64]", "MODEL.ROI_HEADS.NUM_CLASSES", "6",
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "32", "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "200",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "50", "MODEL.RPN.PRE_NMS_TOPK_TEST", "200", "MODEL.RPN.POST_NMS_TOPK_TEST", "30",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16", "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", "6",
    "MODEL.PIXEL_MEAN", "[110.0, 110.0, 110.0]", "MODEL.PIXEL_STD", "[60.0, 60.0, 60.0]",
]


def tiny_opts(root, output_dir, max_iter: int = 4, **extra) -> list[str]:
    """KEY VALUE overrides for configs/quickstart.yaml: a few-kiloparameter model on 96-px images."""
    opts = TINY_MODEL + [
        "DATASETS.ROOT", str(root), "DATASETS.SYNTHETIC.NUM_TRAIN", "8", "DATASETS.SYNTHETIC.NUM_VAL", "4",
        "DATASETS.SYNTHETIC.IMAGE_SIZE", "96", "INPUT.MIN_SIZE_TRAIN", "[96]", "INPUT.MAX_SIZE_TRAIN", "128",
        "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "128", "DATALOADER.NUM_WORKERS", "0",
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.01", "SOLVER.MAX_ITER", str(max_iter),
        "SOLVER.STEPS", f"[{max(1, max_iter - 1)}]", "SOLVER.WARMUP_ITERS", "2", "SOLVER.CHECKPOINT_PERIOD", "2",
        "OUTPUT_DIR", str(output_dir), "LOG_PERIOD", "1", "SEED", "3",
    ]
    for k, v in extra.items():
        opts += [k, str(v)]
    return opts


def tiny_test_config(*extra):
    """The tiny detector's config for inference tests: 96-px test scale, every detection kept."""
    import os

    from detection.config import load_config

    quickstart = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "quickstart.yaml")
    return load_config(quickstart, TINY_MODEL + ["INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "128",
                                                 "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", *extra])


def tiny_checkpoint(directory, cfg=None, class_names=("a", "b", "c", "d", "e", "f")) -> str:
    """A checkpoint as tools/train_net.py writes it (weights, config, class names, category ids 1..6)
    of a randomly initialised (seed 0) tiny detector; returns its path."""
    from detection.engine.checkpointer import Checkpointer
    from detection.modeling import build_model
    from detection.utils.seed import seed_all

    cfg = cfg if cfg is not None else tiny_test_config()
    seed_all(0)
    model = build_model(cfg)
    return Checkpointer(str(directory), model).save("model_final", 7, config=cfg.dump(), class_names=list(class_names),
                                                   category_ids=list(range(1, len(class_names) + 1)))
