"""The fused region-style network as an AOTInductor package (its own file: 165 s of compilation on the
2-core machine, so pytest-xdist runs it beside test_aoti.py). Its segmentation branch runs at a
size computed from the input (short side at ``base_size``), the hardest dynamic shape we export."""

from __future__ import annotations

import pytest

from aoti_helpers import built, check_package_without_model_code, settings  # noqa: F401  (fixtures)


@pytest.mark.slow
def test_fused_package_matches_eager_in_a_process_without_the_model_code(built, settings, tmp_path):
    check_package_without_model_code(built, settings, "fused_region_style", tmp_path)
