"""Optical flow: TV-L1, DIS and Farneback, quantisation to JPEG-ready uint8, and colour visualisation."""
