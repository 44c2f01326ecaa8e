"""Where audio comes from: sources, the frame type and resampling to 16 kHz mono."""
