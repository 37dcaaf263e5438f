"""Training: the GAN (+ encoder), the segmentation branch, presets; and the demo-bundle export."""
