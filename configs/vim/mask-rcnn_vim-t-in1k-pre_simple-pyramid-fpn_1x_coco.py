# Mask R-CNN + FPN with a Vim-Ti backbone on COCO, 1x schedule (the shared Swin-recipe base: AdamW lr 1e-4 wd 0.05).
# Backbone as in the official ViTDet-style detector of hustvl/Vim (det/configs/common/models/mask_rcnn_vimdet.py):
# no class token, 2D RoPE on the block inputs and the residual stream, drop path 0.1, layer-wise lr decay 0.837
# (cascade_mask_rcnn_vimdet_t_100ep_adj1.py), and a simple feature pyramid: the last block's residual stream
# resampled x4 / x2 / x1 / x0.5 (strides 4-32), here fed to mmdet's FPN. The official run trained Cascade Mask R-CNN
# for 100 epochs with 1024 large-scale jitter in detectron2; this config keeps mmdet's 1x Mask R-CNN recipe.
_base_ = '../_base_/mask-rcnn_fpn_swin-recipe_1x_coco.py'
default_scope = 'mmdet'

checkpoint = 'checkpoints/vim-tiny_in1k.pth'  # converted with tools/model_converters/vim2mmssm.py (README.md)
model = dict(
    backbone=dict(
        type='mmssm.Vim',
        arch='tiny',
        img_size=1024,
        out_type='featmap',
        out_indices=(-1, -1, -1, -1),  # the last block, 4 times
        pyramid_scales=(4.0, 2.0, 1.0, 0.5),
        with_cls_token=False,
        use_rope=True,
        rope_residual=True,
        drop_path_rate=0.1,
        pyramid_norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    neck=dict(in_channels=[192, 192, 192, 192]))

optim_wrapper = dict(
    constructor='mmssm.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(_delete_=True, layer_decay_rate=0.837, flat_decay_mult=0.0,
                       custom_keys={'pos_embed': dict(decay_mult=0.0)}))
