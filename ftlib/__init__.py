"""ftlib: the helpers the course's notebooks derive and keep.

Each module is written in a notebook first (plain code, checked against the
library), then kept here so later notebooks can import it:

=================  ==========================================  ========
module             what it keeps                               notebook
=================  ==========================================  ========
``ftlib.device``   device / precision choice, seeding          00
``ftlib.budget``   CPU-small vs GPU-full run sizes             00
``ftlib.models``   ``course-bert`` / ``course-gpt`` loading    00
``ftlib.data``     SST-2 and tinyshakespeare, mirror or hub    00
=================  ==========================================  ========
"""

__version__ = "0.1.0"


class CourseError(RuntimeError):
    """One clear error that says what went wrong and what to do about it."""


from ftlib.device import pick_device, pick_dtype, autocast, seed_everything, describe_device  # noqa: E402
from ftlib.budget import Budget, get_budget  # noqa: E402
from ftlib.models import resolve_model, load_tokenizer, load_model, COURSE_MODELS  # noqa: E402
from ftlib.data import load_sst2, load_tinyshakespeare, data_dir  # noqa: E402

__all__ = [
    "CourseError",
    "pick_device", "pick_dtype", "autocast", "seed_everything", "describe_device",
    "Budget", "get_budget",
    "resolve_model", "load_tokenizer", "load_model", "COURSE_MODELS",
    "load_sst2", "load_tinyshakespeare", "data_dir",
]
