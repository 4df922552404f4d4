"""curate/stages/mix"""
