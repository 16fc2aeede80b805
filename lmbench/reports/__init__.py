"""Reports: leaderboard tables (Markdown, CSV), the HTML page, its plots, and published
reference rows.
"""
