"""Model builders and model statistics for keras_nna.

`AkidaNet` builds the reference image classifier (MobileNet V1 with standard
first convolutions, raw uint8 pixels in, logits out). `ResNet8`, `DSCNN` and
`DenseAutoencoder` build the MLPerf Tiny reference models (image
classification, keyword spotting, anomaly detection; see
`keras_nna.models.mlperf_tiny`). `count_macs` counts the multiply-accumulates
of any built Keras model, the accelerator's main cost:

    from keras_nna.models import AkidaNet, count_macs

    model = AkidaNet(input_shape=(96, 96, 3), alpha=0.25, classes=2)
    model.count_params()   # 226906
    count_macs(model)      # 16.51 M

`keras_nna.models.summary` also has `layer_macs`, `format_macs` and
`macs_summary` for per-layer breakdowns.
"""

from keras_nna.models.akidanet import AkidaNet
from keras_nna.models.mlperf_tiny import DSCNN, DenseAutoencoder, ResNet8
from keras_nna.models.summary import count_macs

__all__ = ["AkidaNet", "DSCNN", "DenseAutoencoder", "ResNet8", "count_macs"]
