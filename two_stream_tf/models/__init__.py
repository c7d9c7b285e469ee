"""Keras models: backbone registry, spatial and temporal streams, TSN consensus and fusion."""
