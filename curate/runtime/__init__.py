"""curate/runtime"""
