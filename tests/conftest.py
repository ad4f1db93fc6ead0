import os

# No test may touch the network: every hub lookup must be answered from local files or fail fast.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory):
    """A private compact cache for the whole test session (never the user's ~/.cache)."""
    root = tmp_path_factory.mktemp("compact-cache")
    os.environ["COMPACT_CACHE"] = str(root)
    return root


@pytest.fixture(scope="session")
def quick_reference(cache_root):
    """The --quick reference build (data + teacher), built once per session."""
    from compact.reference.build import ReferenceBuildConfig, build_reference

    return build_reference(ReferenceBuildConfig(size="quick"))


@pytest.fixture(autouse=True)
def _default_teacher_options():
    """`compact --allow-pickle ...` sets process-wide loading options; CLI tests must not leak them."""
    from compact.models.teachers import TeacherOptions, set_default_options

    yield
    set_default_options(TeacherOptions())
