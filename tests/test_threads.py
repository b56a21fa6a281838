"""torch's intra-op threads: OMP_NUM_THREADS, else the affinity mask shared among torchrun's local
processes; loader workers get one thread and OpenCV none of its own. glibc keeping freed memory."""
import os
import subprocess
import sys

import cv2
import pytest
import torch

from detection.utils import threads
from detection.utils.threads import intra_op_threads, worker_threads


@pytest.mark.parametrize("environ, cpus, expected", [
    ({}, 2, 2),                                              # the affinity mask, alone
    ({}, 16, 16),
    ({"OMP_NUM_THREADS": "3"}, 16, 3),                       # the user's choice wins
    ({"OMP_NUM_THREADS": "3", "LOCAL_WORLD_SIZE": "8"}, 16, 3),
    ({"LOCAL_WORLD_SIZE": "4"}, 16, 4),                      # torchrun: 16 CPUs / 4 processes
    ({"LOCAL_WORLD_SIZE": "3"}, 16, 5),                      # rounded down
    ({"LOCAL_WORLD_SIZE": "8"}, 2, 1),                       # more processes than CPUs: at least 1
    ({"LOCAL_WORLD_SIZE": "1"}, 6, 6),
    ({"OMP_NUM_THREADS": " "}, 6, 6),                        # blank counts as unset
])
def test_thread_count_from_environment_and_affinity(environ, cpus, expected):
    n, why = intra_op_threads(environ, cpus)
    assert n == expected
    assert ("OMP_NUM_THREADS" in why) == ("OMP_NUM_THREADS" in environ and environ["OMP_NUM_THREADS"].strip() != "")


def test_the_affinity_mask_not_the_machine_is_counted(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 5, 7}, raising=False)
    assert intra_op_threads({}) == (3, "3 CPU(s) in the affinity mask")
    assert intra_op_threads({"LOCAL_WORLD_SIZE": "2"})[0] == 1


@pytest.mark.parametrize("key, value", [("OMP_NUM_THREADS", "0"), ("OMP_NUM_THREADS", "two"),
                                        ("LOCAL_WORLD_SIZE", "-1")])
def test_a_bad_environment_variable_is_named(key, value):
    with pytest.raises(ValueError, match=f"{key}.*{value}"):
        intra_op_threads({key: value}, 4)


def test_configure_threads_sets_torch_once(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_chosen", None)
    monkeypatch.setattr(threads, "intra_op_threads", lambda: (1, "test"))
    try:
        assert threads.configure_threads() == (1, "test")
        assert torch.get_num_threads() == 1
        monkeypatch.setattr(threads, "intra_op_threads", lambda: (2, "other"))
        assert threads.configure_threads() == (1, "test")  # the first choice stays
    finally:
        torch.set_num_threads(before)


def test_worker_threads_gives_a_worker_one_torch_thread_and_no_opencv_pool():
    before_torch, before_cv2 = torch.get_num_threads(), cv2.getNumThreads()
    try:
        worker_threads(0)
        assert torch.get_num_threads() == 1
        assert cv2.getNumThreads() == 1  # setNumThreads(0): OpenCV runs sequentially, reported as 1
    finally:
        torch.set_num_threads(before_torch)
        cv2.setNumThreads(before_cv2)


def test_the_loaders_worker_init_functions_set_the_worker_threads():
    from torch.utils.data import DataLoader

    from detection.data.build import _WorkerInit

    before_torch, before_cv2 = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(2)
    try:
        _WorkerInit(seed=0, rank=0)(0)  # the train loader's, run here in the main process
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (1, 1)
    finally:
        torch.set_num_threads(before_torch)
        cv2.setNumThreads(before_cv2)
    # and in a real worker process of a loader that uses it
    seen = list(DataLoader(_ThreadsSeen(), batch_size=None, num_workers=1, worker_init_fn=worker_threads))
    assert [tuple(s) for s in seen] == [(1, 1)]


class _ThreadsSeen(torch.utils.data.Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, i):
        return torch.get_num_threads(), cv2.getNumThreads()


FAULTS = """
import importlib.util, resource, sys, torch
spec = importlib.util.spec_from_file_location("malloc", sys.argv[1])  # not the whole package: faster
malloc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(malloc)
torch.set_num_threads(1)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, padding=1))
x = torch.randn(2, 3, 128, 128)

def faults_per_step():  # activations and gradients of 2 MiB, allocated and freed each step
    net(x).square().sum().backward()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        net(x).square().sum().backward()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 5

print(faults_per_step(), malloc.keep_freed_memory(), faults_per_step())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_kept_freed_memory_is_reused_with_fewer_page_faults():
    """Training-like steps: with glibc's defaults their 2 MiB blocks are mapped afresh each step
    (about 1300 page faults a step here), kept memory is reused (about 300)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "detection", "utils", "malloc.py")
    env = {k: v for k, v in os.environ.items() if k != "DETECTION_MALLOC_DEFAULTS"}
    out = subprocess.run([sys.executable, "-c", FAULTS, path], env=env, capture_output=True, text=True, check=True)
    n_default, kept, n_kept = out.stdout.split()
    assert kept == "True"
    assert 2 * int(n_kept) < int(n_default), out.stdout
