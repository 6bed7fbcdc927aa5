"""Turn a full-size OpenMMLab config into a tiny end-to-end run on generated data, for the config tests.

The model type, pipeline, optimizer, schedulers, hooks and metric stay those of the config; only sizes change:
image sizes in the pipelines shrink by a factor, the data roots point at tiny generated datasets
(``tiny_datasets``), loaders use batch 2 in the main process, and training stops after one epoch or two
iterations. Widths and depths are the caller's business (``set_model_channels`` wires a narrow backbone in).
"""
import os.path as osp

from .tiny_datasets import make_tiny_dataset

DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
EVALUATORS = ('val_evaluator', 'test_evaluator')
# Keys of pipeline transforms (and of segmentation pre-processors / sliding-window tests) that hold image sizes.
SIZE_KEYS = ('scale', 'scales', 'crop_size', 'size', 'stride')
MIN_SIZE = 16


def inner_datasets(dataset):
    """The leaf dataset configs under wrappers (``dataset=`` of RepeatDataset, ``datasets=`` of ConcatDataset)."""
    if 'datasets' in dataset:
        return [leaf for child in dataset['datasets'] for leaf in inner_datasets(child)]
    if 'dataset' in dataset:
        return inner_datasets(dataset['dataset'])
    return [dataset]


def _shrink(value, factor, multiple=1):
    """Divide every int in an int / tuple / list-of-tuples size by ``factor`` (at least MIN_SIZE), rounded to a
    multiple of ``multiple``; keep floats."""
    if isinstance(value, int) and not isinstance(value, bool):
        return multiple * max(1, round(max(MIN_SIZE, round(value / factor)) / multiple))
    if isinstance(value, (list, tuple)):
        return type(value)(_shrink(item, factor, multiple) for item in value)
    return value


def shrink_sizes(node, factor, multiple=1):
    """Shrink, in place, the sizes of every transform found in a (nested) pipeline ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in SIZE_KEYS:
                node[key] = _shrink(value, factor, multiple)
            else:
                shrink_sizes(value, factor, multiple)
    elif isinstance(node, list):
        for item in node:
            shrink_sizes(item, factor, multiple)


def redirect_to_tiny_data(cfg, data_dir, tiny_kwargs=None):
    """Generate the tiny dataset of each dataloader's dataset type under ``data_dir`` and point the config at it.

    Datasets rendered in memory (no ``data_root``) are shrunk with ``tiny_kwargs[type]`` instead. Evaluator
    annotation files below the old data root move along. Returns {old data_root: new data_root}.
    """
    tiny_kwargs = tiny_kwargs or {}
    moved = {}
    for name in DATALOADERS:
        for dataset in inner_datasets(cfg[name]['dataset']):
            dataset.update(tiny_kwargs.get(dataset['type'], {}))
            old_root = dataset.get('data_root')
            if old_root is None:
                continue
            if old_root not in moved:
                new_root = osp.join(data_dir, dataset['type'].split('.')[-1])
                if not osp.isdir(new_root):
                    make_tiny_dataset(dataset['type'], new_root)
                moved[old_root] = new_root
            dataset['data_root'] = moved[old_root]
    for name in EVALUATORS:
        for evaluator in _as_list(cfg.get(name)):
            ann_file = evaluator.get('ann_file')
            for old_root, new_root in moved.items():
                if ann_file and ann_file.startswith(old_root):
                    evaluator['ann_file'] = osp.join(new_root, osp.relpath(ann_file, old_root))
    return moved


def _as_list(value):
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def set_model_channels(model, channels):
    """Wire a backbone with per-stage output ``channels`` into the neck / heads of a classifier, a two-stage
    detector (FPN) or an encoder-decoder segmentor, in place."""
    if 'decode_head' in model:  # a list for multi-level heads, an int after a one-output (U-Net) backbone
        model.decode_head.in_channels = list(channels) if len(channels) > 1 else channels[0]
        if model.get('semantic_head'):  # SemanticChangeEncoderDecoder's per-date head
            model.semantic_head.in_channels = list(channels)
        if model.get('auxiliary_head'):
            model.auxiliary_head.in_channels = channels[model.auxiliary_head.in_index]
    elif model.get('neck') and 'in_channels' in model.neck:
        model.neck.in_channels = list(channels)
    elif 'head' in model:
        model.head.in_channels = channels[model.backbone.get('out_indices', (-1, ))[-1]]
    else:
        raise KeyError(f'do not know where the backbone of a {model.type} feeds: add it to set_model_channels')


def make_quick(cfg, work_dir, size_factor, size_multiple=1, batch_size=2, max_iters=2):
    """Small sizes (multiples of ``size_multiple``), batch ``batch_size`` without worker processes, one epoch (or
    ``max_iters`` iterations)."""
    cfg.work_dir = work_dir
    shrunk = set()  # a pipeline shared by two loaders is shrunk once
    for name in DATALOADERS:
        loader = cfg[name]
        loader.update(batch_size=batch_size, num_workers=0, persistent_workers=False)
        for dataset in inner_datasets(loader['dataset']):
            pipeline = dataset.get('pipeline', [])
            if id(pipeline) not in shrunk:
                shrunk.add(id(pipeline))
                shrink_sizes(pipeline, size_factor, size_multiple)
    shrink_sizes(cfg.model.get('data_preprocessor', {}), size_factor, size_multiple)
    shrink_sizes(cfg.model.get('test_cfg') or {}, size_factor, size_multiple)
    by_epoch = cfg.train_cfg.get('by_epoch', 'max_epochs' in cfg.train_cfg)
    length_key = 'max_epochs' if by_epoch else 'max_iters'
    full_length = cfg.train_cfg[length_key]
    # Schedulers without `end` run to the end of training: pin it to the full length so that `begin < end` holds.
    for scheduler in _as_list(cfg.get('param_scheduler')):
        if 'end' not in scheduler and scheduler.get('by_epoch', True) == by_epoch:
            scheduler['end'] = full_length
    quick_length = 1 if by_epoch else max_iters
    cfg.train_cfg.update({length_key: quick_length, 'val_interval': quick_length})
    cfg.default_hooks.logger.interval = 1
