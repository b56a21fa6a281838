import logging

import pytest
import torch


@pytest.fixture
def single_thread():
    """One intra-op thread: on a small, shared CPU this is several times faster than threads that
    contend (and spin) for the same cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


_ROOT_LOGGER = logging.getLogger()
_ROOT_STATE = (list(_ROOT_LOGGER.handlers), _ROOT_LOGGER.level)


@pytest.fixture(autouse=True)
def restore_root_logger():
    """Tools run in-process call setup_logger, which replaces the root logger's handlers (a console
    bound to the sys.stdout of that moment, a log file). After each test the root logger is put
    back as the session found it, so a test that reads its own stdout
    (detection.evaluation.report.emit) does not depend on which tests ran before it."""
    yield
    handlers, level = _ROOT_STATE
    for h in list(_ROOT_LOGGER.handlers):
        if h not in handlers:
            _ROOT_LOGGER.removeHandler(h)
            h.close()
    for h in handlers:
        if h not in _ROOT_LOGGER.handlers:
            _ROOT_LOGGER.addHandler(h)
    _ROOT_LOGGER.setLevel(level)
