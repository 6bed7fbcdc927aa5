"""Helpers for tests and examples: tiny datasets in real on-disk formats and tiny versions of full configs.

- ``make_imagenet(root)``, ``make_coco(root)``, ``make_ade20k(root)``, ``make_levir_cd(root)``, ``make_second(root)``,
  ``make_xbd(root)``, ``make_isic(root)``: write a few 64x64 shape pictures in the layout of ImageNet (mmpretrain),
  COCO instances (mmdet), ADE20K (mmseg), LEVIR-CD (``mmssm.LEVIRCDDataset``), SECOND (``mmssm.SECONDDataset``), xBD
  (``mmssm.XBDDataset``) or ISIC (``mmssm.ISICDataset``); ``make_synapse(root)`` a few small CT-like
  volumes in the Synapse layout (``mmssm.SynapseDataset``), ``make_acdc(root)`` cardiac-MRI-like ones in the ACDC
  layout (``mmssm.ACDCDataset``), ``make_nnunet_raw_2d(root)`` an nnU-Net raw 2D set (``mmssm.NNUNetRaw2DDataset``);
  ``make_tiny_dataset(type, root)`` picks the maker for a config's dataset type
  (``TINY_DATASETS``).
- ``redirect_to_tiny_data``, ``make_quick``, ``set_model_channels``: shrink a loaded config to a run of seconds.
- ``assert_checkpointing_keeps_gradients``: a backbone's ``with_cp`` gives the same gradients.
"""
from .backbones import assert_checkpointing_keeps_gradients
from .configs import inner_datasets, make_quick, redirect_to_tiny_data, set_model_channels, shrink_sizes
from .tiny_datasets import (TINY_DATASETS, make_acdc, make_ade20k, make_coco, make_imagenet, make_isic,
                            make_levir_cd, make_nnunet_raw_2d, make_second, make_synapse, make_tiny_dataset,
                            make_xbd)

__all__ = ['TINY_DATASETS', 'assert_checkpointing_keeps_gradients', 'inner_datasets', 'make_acdc', 'make_ade20k',
           'make_coco', 'make_imagenet', 'make_isic', 'make_levir_cd', 'make_nnunet_raw_2d', 'make_quick',
           'make_second', 'make_synapse', 'make_tiny_dataset', 'make_xbd', 'redirect_to_tiny_data',
           'set_model_channels', 'shrink_sizes']
