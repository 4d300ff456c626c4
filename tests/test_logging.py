"""What opsearch keeps out of the user's way: Optuna's traceback for a trial opsearch failed with a reason of its
own (the trial's line says it), while Optuna's other warnings still reach the user."""

from __future__ import annotations

import logging
import sys

import optuna

from opsearch._logging import FailedTrialFilter, quiet_libraries
from opsearch.errors import TrialFailed


def _record(message: str, exc: BaseException | None = None) -> logging.LogRecord:
    info = None
    if exc is not None:
        try:
            raise exc
        except BaseException:
            info = sys.exc_info()
    return logging.LogRecord("optuna.study._optimize", logging.WARNING, __file__, 1, message, None, info)


def test_a_trial_opsearch_failed_is_not_logged_twice_by_optuna() -> None:
    quiet_libraries()
    handlers = logging.getLogger("optuna").handlers
    assert handlers and all(any(isinstance(f, FailedTrialFilter) for f in h.filters) for h in handlers)
    quiet_libraries()  # a second call adds no second filter
    assert all(sum(isinstance(f, FailedTrialFilter) for f in h.filters) == 1 for h in handlers)
    handler = handlers[0]
    failed = _record("Trial 3 failed with parameters: {} because of the following error: TrialFailed('x').",
                     TrialFailed("crashed with SIGSEGV while quantizing"))
    assert not handler.filter(failed)
    assert not handler.filter(_record("Trial 3 failed with value None."))
    # a bug (any other error) keeps its traceback, and Optuna's other warnings pass
    assert handler.filter(_record("Trial 4 failed with parameters: {} because of ...", ValueError("bug")))
    assert handler.filter(_record("Trial 5 failed with value (1.0, nan)."))
    assert optuna.logging.get_verbosity() == optuna.logging.WARNING
