module example.com/fsprobe

go 1.27
