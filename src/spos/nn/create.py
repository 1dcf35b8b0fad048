"""A model is one call, as in timm: :func:`create_model` builds a zoo model or an arch string as
a plain network, with the trained weights of a spos file if given, and a new classifier when
fine-tuning for another number of classes."""

from __future__ import annotations

import os

from .. import zoo
from ..errors import SposError
from ..space import SearchSpace
from .io import load_model
from .supernet import SubNet, SuperNet


def create_model(
    arch: str | None = None,
    *,
    num_classes: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    **space_options,
) -> SubNet:
    """A plain ``nn.Module`` (:class:`SubNet`, in training mode) of ``arch``.

    - ``arch``: a zoo name (``"oneshot-s+"``) or an arch string (``BLOCKS:CHANNELS``).
    - Without ``checkpoint``: random weights; ``space_options`` are
      :class:`~spos.space.SearchSpace` fields (``input_size``, ``input_channels``, ``use_se``,
      ``layout``/``width``, ...); zoo names carry their own SE and head options.
    - ``checkpoint``: a file a spos run wrote. A subnet's ``final.pt`` gives its arch and trained
      weights (``arch`` may be left out); a supernet file gives the path ``arch`` with the weights
      it inherits there (a start for fine-tuning, not a stand-alone-trained net).
    - ``num_classes``: the classifier's outputs; with a checkpoint of another class count the
      classifier is replaced by a new, randomly initialised one and every other weight is kept.
    """
    if checkpoint is None:
        if arch is None:
            raise SposError("create_model needs an arch string or zoo name (or a checkpoint=...)")
        opts = {**space_options, **({"num_classes": num_classes} if num_classes is not None else {})}
        space = SearchSpace.from_options(opts, defaults={"channel_genes": tuple(range(10))})
        genes, space = zoo.resolve(arch, space)
        return SubNet(space, genes)
    if space_options:
        raise SposError(f"{checkpoint} carries its own search space; drop {sorted(space_options)}")
    model, space, saved = load_model(checkpoint)
    if isinstance(model, SuperNet):
        if arch is None:
            raise SposError(f"{checkpoint} is a supernet: pass the arch of the path to take out of it")
        net = model.subnet(zoo.resolve(arch, space)[0])
    else:
        if arch is not None and zoo.resolve(arch, space)[0] != saved:
            raise SposError(f"{checkpoint} holds arch {saved}, not {arch}; leave out the arch or pass another file")
        net = model
    return net if num_classes is None else with_classes(net, num_classes)


def with_classes(net: SubNet, num_classes: int) -> SubNet:
    """``net`` with a new, randomly initialised classifier of ``num_classes`` outputs (itself if it
    has that many already); every other weight is copied."""
    if num_classes == net.space.num_classes:
        return net
    new = SubNet(net.space.replace(num_classes=num_classes), net.arch)
    kept = {k: v for k, v in net.state_dict().items() if not k.startswith("classifier.")}
    missing, unexpected = new.load_state_dict(kept, strict=False)
    assert not unexpected and all(k.startswith("classifier.") for k in missing), (missing, unexpected)
    return new
