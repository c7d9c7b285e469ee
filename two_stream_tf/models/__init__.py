"""Keras models: backbone registry, spatial and temporal streams, TSN consensus and fusion.

    from two_stream_tf.models import spatial_model, temporal_model, two_stream_model
    rgb = spatial_model(101, backbone="resnet50", num_segments=3, partial_bn=True)
    flow = temporal_model(101, backbone="resnet50", stack_length=5, num_segments=3, partial_bn=True)
    fused = two_stream_model(rgb, flow, fusion="weighted")        # {"rgb", "flow"} -> (B, 101)
"""
from two_stream_tf.models.backbones import (BackboneSpec, RGB_NORMALIZATIONS, get_backbone, list_backbones,
                                            register_backbone)
from two_stream_tf.models.consensus import (CONSENSUS_MODES, MergeSegments, SegmentConsensus, SplitSegments,
                                            frame_model, num_segments_of)
from two_stream_tf.models.cross_modality import cross_modality_kernel, flow_backbone, rgb_input_scale
from two_stream_tf.models.fusion import FUSIONS, WeightedSum, two_stream_model
from two_stream_tf.models.serialization import export_saved_model, load_model, save_model
from two_stream_tf.models.streams import apply_partial_bn, spatial_model, temporal_model

__all__ = [
    "BackboneSpec", "RGB_NORMALIZATIONS", "get_backbone", "list_backbones", "register_backbone",
    "CONSENSUS_MODES", "MergeSegments", "SegmentConsensus", "SplitSegments", "frame_model", "num_segments_of",
    "cross_modality_kernel", "flow_backbone", "rgb_input_scale",
    "FUSIONS", "WeightedSum", "two_stream_model",
    "export_saved_model", "load_model", "save_model",
    "apply_partial_bn", "spatial_model", "temporal_model",
]
