"""One file per quantization method; each registers itself with `@register_method`."""
