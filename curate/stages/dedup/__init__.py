"""curate/stages/dedup"""
