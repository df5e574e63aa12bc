package opts_test

import (
	"fmt"

	"github.com/berth-dev/berth/internal/opts"
)

func ExampleParseVolume() {
	m, _ := opts.ParseVolume("/srv/data:/data:ro")
	fmt.Println(m.Type, m.Source, m.Target, m.ReadOnly, m.Propagation)

	m, _ = opts.ParseVolume("pgdata:/var/lib/postgresql/data")
	fmt.Println(m.Type, m.Source, m.Target)

	_, err := opts.ParseVolume("data:/x")
	fmt.Println(err == nil)
	_, err = opts.ParseVolume("/x:/")
	fmt.Println(err)
	// Output:
	// bind /srv/data /data true rprivate
	// volume pgdata /var/lib/postgresql/data
	// true
	// invalid volume specification "/x:/": destination can't be '/': invalid argument
}

func ExampleParseMount() {
	m, _ := opts.ParseMount("type=tmpfs,target=/run,tmpfs-size=64m,tmpfs-mode=1777")
	fmt.Println(m.Type, m.Target, m.TmpfsOptions())
	// Output:
	// tmpfs /run [noexec nosuid nodev rprivate mode=1777 size=64m]
}

func ExampleParseCPUs() {
	nano, _ := opts.ParseCPUs("1.5")
	quota, period := opts.NanoCPUsToQuota(nano)
	fmt.Println(nano, quota, period)
	// Output:
	// 1500000000 150000 100000
}
