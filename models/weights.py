"""Pretrained weights through torchvision's weights API, with one-line failures.

torchvision downloads weights into ``$TORCH_HOME/hub/checkpoints``; offline that raises deep inside
urllib. :func:`load_tv_weights` turns that into a :class:`SegstyleError` telling the user to place
the file there or to pass ``--no-pretrained``: never a silent fallback to random weights.
"""

from __future__ import annotations

from typing import Any

from segstyle.core.errors import SegstyleError, first_line


def load_tv_weights(weights: Any) -> dict:
    """Return the state dict of a torchvision ``WeightsEnum`` member (downloading if needed)."""
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except Exception as e:  # URLError, HTTPError, socket errors, hash mismatch
        raise SegstyleError(
            f"cannot load pretrained weights {weights} ({type(e).__name__}: {first_line(e, 200)}); "
            f"put '{weights.url.rsplit('/', 1)[-1]}' in $TORCH_HOME/hub/checkpoints or use --no-pretrained"
        ) from None
