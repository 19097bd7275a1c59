"""Where frames go besides the window, behind one interface (FrameOutput): MP4 files, SRT/UDP streams, NDI, a
virtual camera, Spout and Syphon."""
