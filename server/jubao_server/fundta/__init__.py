"""The fund transfer agency (基金注册登记): funds, grants, prices, investors, orders and holdings."""
