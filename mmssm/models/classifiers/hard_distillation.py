"""DeiT hard distillation (Touvron et al., 2021) for mmpretrain: a class head and a distillation head.

Training: loss = (1 - alpha) * loss(head(x), labels) + alpha * CE(dist_head(x), argmax teacher(images)).
Inference: the average of the two heads' logits.
"""
import logging

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.logging import print_log

from mmssm import compat

compat.apply()  # `import mmpretrain.models` needs the transformers-5 shim (mmssm/compat.py, section 4)
from mmpretrain.models import ClsHead, ImageClassifier  # noqa: E402
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS  # noqa: E402

from mmssm.registry import MODELS  # noqa: E402

from ..utils import load_pretrained  # noqa: E402


@MODELS.register_module()
class DistilledLinearClsHead(ClsHead):
    """Two linear heads on the last feature (B, C): ``fc`` (labels) and ``dist_fc`` (teacher); predicts their mean.

    Without teacher logits (a plain ImageClassifier) both heads learn the labels, each with half the weight.
    """

    def __init__(self, num_classes, in_channels, init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02),
                 **kwargs):
        super().__init__(init_cfg=init_cfg, **kwargs)
        self.fc = nn.Linear(in_channels, num_classes)
        self.dist_fc = nn.Linear(in_channels, num_classes)

    def pre_logits(self, feats):
        features = feats[-1]
        if features.dim() != 2:
            raise ValueError(f'DistilledLinearClsHead expects (B, C) features, got {tuple(features.shape)}; '
                             'use the backbone out_type="cls_token" or a pooling neck')
        return features

    def forward_pair(self, feats):
        """(class logits, distillation logits), each (B, num_classes)."""
        features = self.pre_logits(feats)
        return self.fc(features), self.dist_fc(features)

    def forward(self, feats):
        cls_score, dist_score = self.forward_pair(feats)
        return (cls_score + dist_score) / 2

    def loss(self, feats, data_samples, teacher_logits=None, alpha=0.5):
        cls_score, dist_score = self.forward_pair(feats)
        label_loss = self._get_loss(cls_score, data_samples)['loss']
        if teacher_logits is None:
            return dict(loss=(label_loss + self._get_loss(dist_score, data_samples)['loss']) / 2)
        distill_loss = F.cross_entropy(dist_score, teacher_logits.argmax(dim=1))
        return dict(loss_cls=(1 - alpha) * label_loss, loss_distill=alpha * distill_loss)


def build_teacher(teacher):
    """A frozen eval-mode classifier from ``dict(config=<file with a model> or model=<model dict>, checkpoint=...)``."""
    if not isinstance(teacher, dict) or ('config' in teacher) == ('model' in teacher):
        raise ValueError(f'teacher must be a dict with exactly one of "config" or "model" (+ "checkpoint"), '
                         f'got {teacher}')
    unknown = set(teacher) - {'config', 'model', 'checkpoint'}
    if unknown:
        raise KeyError(f'unknown teacher keys {sorted(unknown)}')
    model_cfg = Config.fromfile(teacher['config']).model if 'config' in teacher else teacher['model']
    model = MMPRETRAIN_MODELS.build(model_cfg)
    if teacher.get('checkpoint'):
        load_pretrained(model, teacher['checkpoint'])
    else:
        print_log('the distillation teacher has no checkpoint: it is randomly initialised', level=logging.WARNING)
    model.requires_grad_(False)
    return model.eval()


@MODELS.register_module()
class HardDistillationClassifier(ImageClassifier):
    """ImageClassifier trained with DeiT hard distillation from a frozen teacher; inference is the student's.

    The teacher sees the student's pre-processed (normalised, mixed) images, so both must share one normalisation.
    It is held outside the module tree: not saved in checkpoints, not optimised, not wrapped by DDP, moved to the
    images' device on first use.

    Args:
        teacher: ``dict(config=path, checkpoint=path)`` (the config's ``model``) or ``dict(model=cfg, checkpoint=...)``.
        alpha: weight of the distillation loss (DeiT: 0.5).
        **kwargs: ImageClassifier arguments; the head must be a :class:`DistilledLinearClsHead`.
    """

    def __init__(self, teacher, alpha=0.5, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f'alpha must lie in [0, 1], got {alpha}')
        if not isinstance(self.head, DistilledLinearClsHead):
            raise TypeError(f'HardDistillationClassifier needs a DistilledLinearClsHead, got {type(self.head).__name__}')
        self.alpha = alpha
        self._teacher = (build_teacher(teacher),)  # a tuple keeps it out of parameters() and state_dict()

    @property
    def teacher(self):
        return self._teacher[0]

    def loss(self, inputs, data_samples):
        with torch.no_grad():
            teacher_logits = self.teacher.to(inputs.device)(inputs, mode='tensor')
        feats = self.extract_feat(inputs)
        return self.head.loss(feats, data_samples, teacher_logits=teacher_logits, alpha=self.alpha)
