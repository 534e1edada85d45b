"""Applications built on jaxvene, outside the library core: the causal-tracing demo
(`python -m jaxvene demo`) and DAS on hierarchical equality (`python -m jaxvene das`)."""
