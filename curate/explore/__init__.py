"""curate/explore"""
