"""The model: two token encoders and a flow-matching UNet decoder, plus samplers."""
