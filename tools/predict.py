#!/usr/bin/env python
"""Run a detector over images, folders, lists, videos or a camera; draw, and write the detections.

    python tools/predict.py --weights output/quickstart/model_final.pth --input IMG_DIR_LIST_OR_VIDEO ... \\
        --output DIR [--recursive] [--score-thresh 0.5] [--save-coco results.json] [--no-draw] [KEY VALUE ...]

Inputs (any mix): image files; folders (their images and videos; subfolders with --recursive); a
text file (.txt, .lst) listing one path per line (relative paths from the list's folder); video
files (.mp4, .avi, .mov, .mkv, .webm, .m4v through OpenCV); a camera index ("0") or a stream URL
("rtsp://...") where OpenCV opens it (stop with Ctrl-C or --max-frames).

The model comes from the checkpoint alone (it carries its config); --config CFG is needed for a
foreign checkpoint and overrides the checkpoint's config when given. KEY VALUE pairs override either.

Outputs under DIR, each input at its path relative to the common folder of all inputs (so
same-named files of different folders stay apart; no input file is ever written over):
  <rel path>                 the image with the detections >= --score-thresh drawn
  detections.jsonl           one line per image: {"file", "detections": [{"box", "score", "label", "class"}]}
  <rel path>[.mp4]           for a video: the drawn video (same fps and size, mp4v)
  <rel path>.jsonl           for a video: one line per frame: {"frame", "detections": [...]}
--save-coco FILE writes every detection (not only those >= --score-thresh) of the whole input as one
COCO results file (tools/eval.py --gt GT --dt FILE evaluates it) and FILE's stem + ".image_ids.json",
the file -> image id mapping: the number in the file name when every name is one (COCO, the
synthetic sets), else 1..N in path order (video frames: "<rel path>#<frame>").
Ends with the count of processed and skipped inputs; exits non-zero when nothing was processed.
"""
import json
import logging
import os
import sys

import cv2

from detection.config import load_config
from detection.data.image_io import IMAGE_EXTS, ImageReadError, read_image
from detection.engine.launch import default_parser, run_tool
from detection.engine.predictor import Predictor
from detection.evaluation.coco_eval import outputs_to_coco_results
from detection.utils.logger import setup_logger
from detection.utils.progress import Progress
from detection.utils.visualize import draw_detections

logger = logging.getLogger("detection")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
LIST_EXTS = (".txt", ".lst")


def is_live(source: str) -> bool:
    """A camera index or a stream URL (not a file)."""
    return (source.isdigit() and not os.path.exists(source)) or "://" in source


def _folder_files(folder: str, recursive: bool) -> list[str]:
    if not recursive:
        return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                      if os.path.isfile(os.path.join(folder, f)) and f.lower().endswith(IMAGE_EXTS + VIDEO_EXTS))
    return sorted(os.path.join(d, f) for d, _, files in os.walk(folder) for f in files
                  if f.lower().endswith(IMAGE_EXTS + VIDEO_EXTS))


def _list_file(path: str) -> list[str]:
    base = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8") as f:
        lines = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    return [ln if os.path.isabs(ln) or is_live(ln) else os.path.join(base, ln) for ln in lines]


def collect_inputs(items: list[str], recursive: bool) -> tuple[list[str], list[str], int]:
    """(files, live sources, missing count) of --input: folders and list files expanded."""
    files, live, missing = [], [], 0
    for item in items:
        if is_live(item):
            live.append(item)
        elif os.path.isdir(item):
            found = _folder_files(item, recursive)
            if not found:
                logger.warning("--input %s: no images or videos in this folder%s", item,
                               "" if recursive else " (subfolders need --recursive)")
            files += found
        elif os.path.isfile(item) and item.lower().endswith(LIST_EXTS):
            sub_files, sub_live, sub_missing = collect_inputs(_list_file(item), recursive)
            files, live, missing = files + sub_files, live + sub_live, missing + sub_missing
        elif os.path.isfile(item):
            files.append(item)
        else:
            logger.error("--input %s: no such file or folder, skipped", item)
            missing += 1
    seen, unique = set(), []
    for f in files:  # a file given twice (a folder and a list) runs once
        key = os.path.realpath(f)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, live, missing


def relative_names(files: list[str]) -> dict[str, str]:
    """Each file's path relative to the deepest folder holding all of them (distinct for distinct files)."""
    if not files:
        return {}
    root = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files])
    return {f: os.path.relpath(os.path.abspath(f), root) for f in files}


def image_ids(names: list[str]) -> dict[str, int]:
    """name -> COCO image id: the number of every file name when all are distinct numbers, else 1..N."""
    stems = [os.path.splitext(os.path.basename(n))[0] for n in names]
    numbered = all(s.isdigit() and "#" not in n for s, n in zip(stems, names))
    if names and numbered and len(set(map(int, stems))) == len(stems):
        return {n: int(s) for n, s in zip(names, stems)}
    return {n: i + 1 for i, n in enumerate(names)}


def video_output_name(rel: str) -> str:
    """The drawn video's name: the input's, with ".mp4" added unless it is an .mp4 already."""
    return rel if rel.lower().endswith(".mp4") else rel + ".mp4"


def detections(out: dict, thresh: float) -> list[dict]:
    keep = out["scores"] >= thresh
    return [{"box": [round(float(v), 2) for v in b], "score": round(float(s), 4), "label": int(lab), "class": c}
            for b, s, lab, c, k in zip(out["boxes"], out["scores"], out["labels"], out["classes"], keep) if k]


class Runner:
    """The predictor, the output folder and what was written; one method per kind of input."""

    def __init__(self, predictor: Predictor, args, inputs: set[str]):
        self.predictor, self.args = predictor, args
        self.inputs = inputs  # real paths of every input file, never written over
        self.coco: list[dict] = []
        self.coco_names: list[str] = []
        self.images_done = self.videos_done = self.skipped = self.frames = 0
        self.batch = predictor.batch_size
        self.jsonl = None if args.no_json else open(os.path.join(args.output, "detections.jsonl"), "w")

    def out_path(self, rel: str) -> str:
        path = os.path.join(self.args.output, rel)
        if os.path.realpath(path) in self.inputs:
            raise ValueError(f"--output {self.args.output}: writing {path} would overwrite the input file of the "
                             "same path; choose another output folder")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def _record(self, name: str, image, out: dict, draw_to: str | None) -> list[dict]:
        dets = detections(out, self.args.score_thresh)
        if self.args.save_coco:
            self.coco_names.append(name)
            self.coco.append(out)
        if draw_to is not None:
            cv2.imwrite(draw_to, draw_detections(image, dets))
        return dets

    def images(self, files: list[str], rel: dict[str, str], progress: Progress) -> None:
        for i in range(0, len(files), self.batch):
            batch, names = [], []
            for path in files[i:i + self.batch]:
                try:
                    batch.append(read_image(path, "BGR"))
                    names.append(rel[path])
                except ImageReadError as e:
                    logger.error("skipping %s", e)
                    self.skipped += 1
            for name, image, out in zip(names, batch, self.predictor(batch) if batch else []):
                draw_to = None if self.args.no_draw else self.out_path(name)
                dets = self._record(name, image, out, draw_to)
                if self.jsonl:
                    self.jsonl.write(json.dumps({"file": name, "detections": dets}) + "\n")
                self.images_done += 1
            progress.update(len(files[i:i + self.batch]))

    def video(self, source: str, name: str, progress: Progress) -> None:
        cap = cv2.VideoCapture(int(source) if source.isdigit() and not os.path.exists(source) else source)
        if not cap.isOpened():
            logger.error("skipping %s: OpenCV cannot open it as a video or stream", source)
            self.skipped += 1
            return
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        video_out = video_output_name(name)
        writer, log = None, None if self.args.no_json else open(self.out_path(name + ".jsonl"), "w")
        frame_index, limit = 0, self.args.max_frames
        try:
            while limit is None or frame_index < limit:
                frames = []
                while len(frames) < self.batch and (limit is None or frame_index + len(frames) < limit):
                    ok, frame = cap.read()
                    if not ok:
                        break
                    frames.append(frame)
                if not frames:
                    break
                for frame, out in zip(frames, self.predictor(frames)):
                    if writer is None and not self.args.no_draw:
                        h, w = frame.shape[:2]
                        writer = cv2.VideoWriter(self.out_path(video_out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                    dets = self._record(f"{name}#{frame_index}", frame, out, None)
                    if writer is not None:
                        writer.write(draw_detections(frame, dets))
                    if log:
                        log.write(json.dumps({"frame": frame_index, "detections": dets}) + "\n")
                    frame_index += 1
                progress.update(len(frames))
        except KeyboardInterrupt:
            logger.info("%s: stopped after %d frames", source, frame_index)
        finally:
            cap.release()
            if writer is not None:
                writer.release()
            if log:
                log.close()
        if frame_index == 0:
            logger.error("skipping %s: no frame could be read", source)
            self.skipped += 1
            return
        self.videos_done += 1
        self.frames += frame_index
        logger.info("%s: %d frames at %.1f fps -> %s", source, frame_index, fps,
                    "(not drawn)" if self.args.no_draw else os.path.join(self.args.output, video_out))

    def write_coco(self, category_ids: list[int]) -> None:
        ids = image_ids(self.coco_names)
        results = [r for name, out in zip(self.coco_names, self.coco)
                   for r in outputs_to_coco_results(ids[name], out, category_ids)]
        path = self.args.save_coco
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(results, f, separators=(",", ":"))
        mapping = os.path.splitext(path)[0] + ".image_ids.json"
        with open(mapping, "w") as f:
            json.dump(ids, f, indent=0)
        logger.info("COCO results: %d detections of %d images -> %s (image ids: %s)", len(results), len(ids), path,
                    mapping)


def build_predictor(args) -> Predictor:
    if args.config:
        cfg = load_config(args.config, args.opts)
        return Predictor.from_checkpoint(args.weights, cfg=cfg) if args.weights else Predictor(cfg)
    if not args.weights:
        raise SystemExit("give --weights CHECKPOINT (our checkpoints carry their config) or --config CFG")
    return Predictor.from_checkpoint(args.weights, args.opts)


def main(argv=None) -> dict:
    parser = default_parser(__doc__, "TEST.IMS_PER_BATCH 4 TEST.TILE.SIZE 512 MODEL.DEVICE cuda")
    parser.add_argument("--weights", default=None, metavar="FILE",
                        help="checkpoint (default with --config: MODEL.WEIGHTS)")
    parser.add_argument("--input", nargs="+", required=True, metavar="PATH",
                        help="images, folders, list files (.txt, .lst), videos, a camera index or a stream URL")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="folder for the drawn images/videos and json lines")
    parser.add_argument("--recursive", action="store_true", help="also the subfolders of input folders")
    parser.add_argument("--score-thresh", type=float, default=0.5, metavar="T",
                        help="draw and list detections with a score of at least this")
    parser.add_argument("--save-coco", default=None, metavar="FILE",
                        help="every detection as one COCO results json (default: not written)")
    parser.add_argument("--no-draw", action="store_true", help="write no drawn images or videos (faster)")
    parser.add_argument("--no-json", action="store_true", help="write no json lines files")
    parser.add_argument("--max-frames", type=int, default=None, metavar="N",
                        help="stop each video or stream after this many frames (default: all)")
    args = parser.parse_args(argv)
    setup_logger(None)
    files, live, missing = collect_inputs(args.input, args.recursive)
    predictor = build_predictor(args)
    os.makedirs(args.output, exist_ok=True)
    runner = Runner(predictor, args, {os.path.realpath(f) for f in files})
    runner.skipped += missing
    rel = relative_names(files)
    images = [f for f in files if not f.lower().endswith(VIDEO_EXTS)]
    videos = [f for f in files if f.lower().endswith(VIDEO_EXTS)]
    outputs = [] if args.no_draw else [rel[f] for f in images] + [video_output_name(rel[v]) for v in videos]
    outputs += [] if args.no_json else [rel[v] + ".jsonl" for v in videos]
    for name in outputs:
        runner.out_path(name)  # fails before any work if an output would land on an input
    frames = sum(int(cv2.VideoCapture(v).get(cv2.CAP_PROP_FRAME_COUNT) or 0) for v in videos)
    if args.max_frames is not None:
        frames = min(frames, args.max_frames * len(videos))
    total = None if live else len(images) + frames
    with Progress(total, "predict", unit="img") as progress:
        runner.images(images, rel, progress)
        for v in videos:
            runner.video(v, rel[v], progress)
        for i, source in enumerate(live):
            runner.video(source, f"camera{source}" if source.isdigit() else f"stream{i}", progress)
    if runner.jsonl:
        runner.jsonl.close()
    if args.save_coco:
        runner.write_coco(predictor.metadata.get("category_ids") or list(range(1, len(predictor.class_names) + 1)))
    processed = runner.images_done + runner.videos_done
    logger.info("processed %d inputs (%d images, %d videos or streams: %d frames), skipped %d; %.2f img/s", processed,
                runner.images_done, runner.videos_done, runner.frames, runner.skipped, progress.rate)
    if not processed:
        logger.error("nothing was processed")
    return {"processed": processed, "images": runner.images_done, "videos": runner.videos_done,
            "frames": runner.frames, "skipped": runner.skipped}


def cli() -> None:
    if not main()["processed"]:
        sys.exit(1)


if __name__ == "__main__":
    run_tool(cli)
