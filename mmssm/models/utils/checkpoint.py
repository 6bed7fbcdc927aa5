"""Strict checkpoint loading shared by every backbone: a mismatch is an error that lists the keys, never a warning.

mmengine's own ``Pretrained`` initialiser only logs missing/unexpected keys, so a wrong or half-converted checkpoint
trains silently from random weights. Backbones call :func:`load_pretrained` from ``init_weights`` instead.
"""
import re
from fnmatch import fnmatchcase

from mmengine.runner.checkpoint import CheckpointLoader

MAX_LISTED_KEYS = 30


class CheckpointMismatchError(ValueError):
    """A state dict does not fit a module; ``missing``, ``unexpected`` and ``mismatched`` hold the offending keys."""

    def __init__(self, source, missing, unexpected, mismatched):
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        lines = [f'checkpoint {source or "<state dict>"} does not match the model:']
        lines += _key_section('missing keys', missing)
        lines += _key_section('unexpected keys', unexpected)
        lines += _key_section('shape mismatches (checkpoint vs model)', mismatched)
        super().__init__('\n'.join(lines))


def _key_section(title, keys):
    if not keys:
        return []
    shown = [f'    {key}' for key in keys[:MAX_LISTED_KEYS]]
    if len(keys) > MAX_LISTED_KEYS:
        shown.append(f'    ... and {len(keys) - MAX_LISTED_KEYS} more')
    return [f'  {len(keys)} {title}:'] + shown


def _is_allowed(key, patterns):
    return any(fnmatchcase(key, pattern) for pattern in patterns)


def load_state_dict_checked(module, state_dict, allow_missing=(), source=''):
    """Load ``state_dict`` into ``module`` and raise :class:`CheckpointMismatchError` on any mismatch.

    Args:
        module: the nn.Module to fill.
        state_dict: name -> tensor, in the module's own key names.
        allow_missing: glob patterns (``fnmatch``, e.g. ``'head.*'``) of module keys that may be absent.
        source: where the weights came from, for the error message.

    Returns:
        The sorted list of module keys that were absent but allowed (left at their initial values).
    """
    expected = module.state_dict()
    missing = sorted(k for k in expected if k not in state_dict)
    allowed_missing = [k for k in missing if _is_allowed(k, allow_missing)]
    missing = [k for k in missing if not _is_allowed(k, allow_missing)]
    unexpected = sorted(k for k in state_dict if k not in expected)
    mismatched = sorted(
        f'{k}: {tuple(v.shape)} vs {tuple(expected[k].shape)}' for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape))
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(source, missing, unexpected, mismatched)
    module.load_state_dict(state_dict, strict=False)
    return allowed_missing


def extract_state_dict(checkpoint):
    """The weights of a loaded checkpoint: its ``state_dict`` or ``model`` entry, or the dict itself."""
    for key in ('state_dict', 'model'):
        if isinstance(checkpoint, dict) and key in checkpoint:
            return checkpoint[key]
    return checkpoint


def strip_prefix(state_dict, prefix, source=''):
    """Keep the keys that start with ``prefix``, without it; an error when none does."""
    stripped = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not stripped:
        examples = ', '.join(list(state_dict)[:5])
        raise ValueError(f'checkpoint {source} has no key starting with {prefix!r} (first keys: {examples})')
    return stripped


def rename_by_rules(key, rules):
    """The new name of ``key`` from the first of ``rules`` ((regex, match -> new name or a falsy value)) whose regex
    matches it; None when no rule matches or the matching rule declines."""
    for pattern, rename in rules:
        match = re.match(pattern, key)
        if match:
            return rename(match) or None
    return None


def rename_keys(state_dict, rename, what):
    """{rename(key): value} for every key; a ValueError listing the keys ``rename`` maps to None (official
    converters drop nothing silently). ``what``: (converter name, checkpoint family) for the message."""
    converted, unknown = {}, []
    for key, value in state_dict.items():
        new_key = rename(key)
        if new_key is None:
            unknown.append(key)
        else:
            converted[new_key] = value
    if unknown:
        converter, family = what
        raise ValueError(f'{converter}: {len(unknown)} keys are not official {family} keys: {unknown[:20]}')
    return converted


def load_pretrained(module, checkpoint, prefix=None, convert=None, map_location='cpu', allow_missing=()):
    """Read ``checkpoint`` (path or URL, through mmengine's CheckpointLoader) into ``module``, strictly.

    Args:
        module: the nn.Module to fill.
        checkpoint: a file path or URL that mmengine can open.
        prefix: keep only keys under this prefix (e.g. ``'backbone.'``) and strip it.
        convert: callable mapping a foreign (official) state dict to the module's key names.
        map_location: passed to the loader.
        allow_missing: glob patterns of module keys that may be absent (see :func:`load_state_dict_checked`).

    Returns:
        The module keys that were absent but allowed.
    """
    loaded = CheckpointLoader.load_checkpoint(checkpoint, map_location=map_location)
    state_dict = dict(extract_state_dict(loaded))
    if prefix:
        state_dict = strip_prefix(state_dict, prefix, checkpoint)
    if convert is not None:
        state_dict = convert(state_dict)
    return load_state_dict_checked(module, state_dict, allow_missing=allow_missing, source=str(checkpoint))


def convert_checkpoint_cli(description, backbone_cls, convert, build_kwargs=None, argv=None, build_parts=None,
                           default_arch='tiny'):
    """The body of ``tools/model_converters/<family>2mmssm.py SRC DST [--arch A]``.

    Reads an official checkpoint (``model`` entry or a bare state dict) through the compat loader, converts it to an
    mmpretrain classifier state dict (``backbone.*`` / ``head.*``), loads its backbone part into
    ``backbone_cls(arch, **build_kwargs)`` so a wrong arch or a damaged file fails listing the keys, then saves
    ``dict(state_dict=..., meta=...)`` to DST. ``build_kwargs`` may be a function of the converted state dict (e.g.
    reading the input channels from it); its result is recorded in the meta. ``build_parts`` ({key prefix: backbone
    -> module}) checks further parts the same way, e.g. a segmentor's ``decode_head.``.
    """
    import argparse
    import os
    import sys

    import torch

    from mmssm.compat import load_checkpoint_file
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('src', help='official checkpoint (with a "model" entry, or a bare state dict)')
    parser.add_argument('dst', help='where to write the mmpretrain checkpoint')
    parser.add_argument('--arch', default=default_arch,
                        help=f'arch to check against: {sorted(backbone_cls.arch_zoo)}')
    args = parser.parse_args(argv)
    state_dict = convert(extract_state_dict(load_checkpoint_file(args.src, map_location='cpu')))
    from_weights = callable(build_kwargs)
    kwargs = build_kwargs(state_dict) if from_weights else build_kwargs or {}
    backbone = backbone_cls(args.arch, **kwargs)
    parts = {'backbone.': lambda _: backbone, **(build_parts or {})}
    try:
        for prefix, build in parts.items():
            weights = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
            load_state_dict_checked(build(backbone), weights, source=args.src)
    except CheckpointMismatchError as error:
        sys.exit(f'{args.src} is not a {backbone_cls.__name__}-{args.arch} checkpoint:\n{error}')
    meta = dict(arch=args.arch, source=args.src, converter=f'tools/model_converters/{os.path.basename(sys.argv[0])}',
                **(dict(build_kwargs=kwargs) if from_weights else {}))
    torch.save(dict(state_dict=state_dict, meta=meta), args.dst)
    print(f'wrote {len(state_dict)} tensors to {args.dst}')
