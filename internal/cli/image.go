package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/image"
)

// engineRoot is --root for the engine verbs (images, later containers).
var engineRoot string

func imageService() (*image.Service, error) {
	if err := os.MkdirAll(engineRoot, 0o711); err != nil {
		return nil, fmt.Errorf("create --root %s: %w", engineRoot, err)
	}
	return image.New(engineRoot)
}

// withImages adapts a verb that needs the image service to cobra's RunE.
func withImages(f func(cmd *cobra.Command, s *image.Service, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		s, err := imageService()
		if err != nil {
			return err
		}
		return f(cmd, s, args)
	}
}

// interruptible is a context cancelled by Ctrl-C, so a long load stops
// cleanly (and rolls back) instead of dying half-way.
func interruptible() (context.Context, func()) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func addImageCommands(root *cobra.Command) {
	imageCmd := &cobra.Command{Use: "image", Short: "Manage images"}
	imageCmd.AddCommand(newImagesCommand("ls"), newImageInspectCommand(), newRmiCommand("rm"), newImagePruneCommand(),
		newHistoryCommand(), newTagCommand(), newImportCommand(), newSaveCommand(), newLoadCommand())
	systemCmd := &cobra.Command{Use: "system", Short: "Manage berth"}
	systemCmd.AddCommand(newSystemDfCommand(), newSystemPruneCommand())
	root.AddCommand(imageCmd, systemCmd, newImagesCommand("images"), newRmiCommand("rmi"), newTagCommand(),
		newImportCommand(), newHistoryCommand(), newSaveCommand(), newLoadCommand())
}

func shortID(id string, noTrunc bool) string {
	if noTrunc {
		return id
	}
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}

// humanSize prints sizes as Docker does (decimal units, 3 significant digits).
func humanSize(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	f := float64(n)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	return fmt.Sprintf("%.4g%s", f, units[i])
}

// humanAgo prints a creation time as Docker's "3 weeks ago".
func humanAgo(t time.Time) string {
	if t.IsZero() {
		return "N/A"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return "Less than a minute ago"
	case d < time.Hour:
		return plural(int(d.Minutes()), "minute") + " ago"
	case d < 48*time.Hour:
		return plural(int(d.Hours()), "hour") + " ago"
	case d < 14*24*time.Hour:
		return plural(int(d.Hours()/24), "day") + " ago"
	case d < 60*24*time.Hour:
		return plural(int(d.Hours()/24/7), "week") + " ago"
	case d < 730*24*time.Hour:
		return plural(int(d.Hours()/24/30), "month") + " ago"
	}
	return plural(int(d.Hours()/24/365), "year") + " ago"
}

func plural(n int, unit string) string {
	if n == 1 {
		if unit == "hour" {
			return "An hour"
		}
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// imageRow is one line of `images`, with Docker's --format field names.
type imageRow struct {
	Repository, Tag, Digest, ID, CreatedSince, CreatedAt, Size string
	Containers                                                 string
}

type imageFilter struct {
	dangling   *bool
	labels     []string
	references []string
}

func parseImageFilters(fs []string) (imageFilter, error) {
	var f imageFilter
	for _, kv := range fs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return f, usageErr("--filter %q: use key=value", kv)
		}
		switch k {
		case "dangling":
			b := v == "true" || v == "1"
			if !b && v != "false" && v != "0" {
				return f, usageErr("--filter dangling=%q: use true or false", v)
			}
			f.dangling = &b
		case "label":
			f.labels = append(f.labels, v)
		case "reference":
			f.references = append(f.references, v)
		default:
			return f, usageErr("--filter %q: unknown filter (use dangling, label or reference)", k)
		}
	}
	return f, nil
}

func (f imageFilter) keep(img *image.Image) bool {
	if f.dangling != nil && (len(img.RepoTags) == 0) != *f.dangling {
		return false
	}
	for _, l := range f.labels {
		k, v, hasV := strings.Cut(l, "=")
		got, ok := img.Labels[k]
		if !ok || (hasV && got != v) {
			return false
		}
	}
	if len(f.references) > 0 {
		match := false
		for _, t := range img.RepoTags {
			match = match || f.matchesRef(t)
		}
		if !match {
			return false
		}
	}
	return true
}

// matchesRef reports whether the tag matches a reference filter (by its
// familiar name:tag or name alone, with path.Match patterns, as Docker).
func (f imageFilter) matchesRef(tag string) bool {
	if len(f.references) == 0 {
		return true
	}
	fam := image.Familiar(tag)
	name := fam[:strings.LastIndex(fam, ":")]
	for _, pat := range f.references {
		if ok, _ := pathMatch(pat, fam); ok {
			return true
		}
		if ok, _ := pathMatch(pat, name); ok {
			return true
		}
	}
	return false
}

func newImagesCommand(use string) *cobra.Command {
	var (
		all, quiet, digests, noTrunc bool
		filters                      []string
		format                       string
	)
	cmd := &cobra.Command{
		Use:   use + " [OPTIONS] [REPOSITORY[:TAG]]",
		Short: "List images",
		Args:  cobra.MaximumNArgs(1),
		RunE: withImages(func(cmd *cobra.Command, s *image.Service, args []string) error {
			f, err := parseImageFilters(filters)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				f.references = append(f.references, args[0])
			}
			imgs, err := s.List()
			if err != nil {
				return err
			}
			sort.Slice(imgs, func(i, j int) bool { return imgs[i].Created.After(imgs[j].Created) })
			var rows []imageRow
			for _, img := range imgs {
				if !f.keep(img) {
					continue
				}
				base := imageRow{ID: shortID(img.ID.String(), noTrunc), CreatedSince: humanAgo(img.Created),
					CreatedAt: img.Created.Format("2006-01-02 15:04:05 -0700 MST"), Size: humanSize(img.Size), Containers: "N/A"}
				if noTrunc {
					base.ID = img.ID.String()
				}
				digest := "<none>"
				if len(img.RepoDigests) > 0 {
					_, d, _ := strings.Cut(img.RepoDigests[0], "@")
					digest = d
				}
				if len(img.RepoTags) == 0 {
					r := base
					r.Repository, r.Tag, r.Digest = "<none>", "<none>", digest
					rows = append(rows, r)
					continue
				}
				for _, t := range img.RepoTags {
					if !f.matchesRef(t) {
						continue // as Docker: only the tags the filter names
					}
					r := base
					fam := image.Familiar(t)
					i := strings.LastIndex(fam, ":")
					r.Repository, r.Tag, r.Digest = fam[:i], fam[i+1:], digest
					rows = append(rows, r)
				}
			}
			out := cmd.OutOrStdout()
			if quiet {
				seen := map[string]bool{}
				for _, r := range rows {
					if !seen[r.ID] {
						seen[r.ID] = true
						fmt.Fprintln(out, r.ID)
					}
				}
				return nil
			}
			if format != "" && format != "table" {
				return formatRows(cmd, format, rows)
			}
			w := tabwriter.NewWriter(out, 0, 8, 3, ' ', 0)
			if digests {
				fmt.Fprintln(w, "REPOSITORY\tTAG\tDIGEST\tIMAGE ID\tCREATED\tSIZE")
			} else {
				fmt.Fprintln(w, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
			}
			for _, r := range rows {
				if digests {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Repository, r.Tag, r.Digest, r.ID, r.CreatedSince, r.Size)
				} else {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.Repository, r.Tag, r.ID, r.CreatedSince, r.Size)
				}
			}
			return w.Flush()
		}),
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "show all images (berth keeps no intermediate images, so the same as without)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only show image IDs")
	cmd.Flags().BoolVar(&digests, "digests", false, "show digests")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "don't truncate output")
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "filter output: dangling=true|false, label=key[=value], reference=pattern")
	cmd.Flags().StringVar(&format, "format", "", "format with a Go template, or 'json'")
	return cmd
}

// formatRows prints each row through --format, as Docker's list verbs do.
func formatRows[T any](cmd *cobra.Command, format string, rows []T) error {
	if strings.HasPrefix(format, "table ") {
		format = strings.TrimPrefix(format, "table ")
	}
	for _, r := range rows {
		if err := formatOut(cmd, format, r); err != nil {
			return err
		}
	}
	return nil
}

func newTagCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
		Short: "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
		Args:  exactArgs(2, "a source image and a target name"),
		RunE: withImages(func(cmd *cobra.Command, s *image.Service, args []string) error {
			return s.Tag(args[0], args[1])
		}),
	}
}

func newRmiCommand(use string) *cobra.Command {
	var force, noPrune bool
	cmd := &cobra.Command{
		Use:   use + " [OPTIONS] IMAGE [IMAGE...]",
		Short: "Remove one or more images",
		Args:  cobra.MinimumNArgs(1),
		RunE: withImages(func(cmd *cobra.Command, s *image.Service, args []string) error {
			ctx, stop := interruptible()
			defer stop()
			var failed []string
			for _, ref := range args {
				items, err := s.Remove(ctx, ref, force, imageInUse())
				for _, it := range items {
					if it.Untagged != "" {
						fmt.Fprintf(cmd.OutOrStdout(), "Untagged: %s\n", image.Familiar(it.Untagged))
					}
					if it.Deleted != "" {
						fmt.Fprintf(cmd.OutOrStdout(), "Deleted: %s\n", it.Deleted)
					}
				}
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "Error response from berth: %s\n", userMessage(err))
					failed = append(failed, ref)
				}
			}
			if len(failed) > 0 {
				return exitError{1}
			}
			return nil
		}),
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "force removal of the image")
	cmd.Flags().BoolVar(&noPrune, "no-prune", false, "accepted for Docker compatibility (berth has no untagged parents)")
	return cmd
}

func newImageInspectCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] IMAGE [IMAGE...]",
		Short: "Display detailed information on one or more images",
		Args:  cobra.MinimumNArgs(1),
		RunE: withImages(func(cmd *cobra.Command, s *image.Service, args []string) error {
			return inspectEach(cmd, format, args, func(ref string) (any, error) { return s.Inspect(ref) })
		}),
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format with a Go template")
	return cmd
}

// inspectEach is the body of the inspect verbs: a JSON array of what get
// returns for each argument, or each through --format with fields by
// their JSON names ({{.Id}}, {{.CreatedAt}} in RFC 3339), as Docker does.
// Failures are reported together after the found ones are printed.
func inspectEach(cmd *cobra.Command, format string, args []string, get func(ref string) (any, error)) error {
	out := []any{}
	var errs []string
	for _, ref := range args {
		v, err := get(ref)
		if err != nil {
			errs = append(errs, userMessage(err))
			continue
		}
		if format != "" {
			if err := formatOut(cmd, format, asJSONValue(v)); err != nil {
				return err
			}
			continue
		}
		out = append(out, v)
	}
	if format == "" {
		if err := printJSON(cmd.OutOrStdout(), out); err != nil {
			return err
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func newHistoryCommand() *cobra.Command {
	var (
		noTrunc, quiet, human bool
		format                string
	)
	cmd := &cobra.Command{
		Use:   "history [OPTIONS] IMAGE",
		Short: "Show the history of an image",
		Args:  exactArgs(1, "an image"),
		RunE: withImages(func(cmd *cobra.Command, s *image.Service, args []string) error {
			entries, err := s.History(args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if quiet {
				for _, h := range entries {
					fmt.Fprintln(out, shortID(h.ID, noTrunc))
				}
				return nil
			}
			if format != "" {
				return formatRows(cmd, format, entries)
			}
			w := tabwriter.NewWriter(out, 0, 8, 3, ' ', 0)
			fmt.Fprintln(w, "IMAGE\tCREATED\tCREATED BY\tSIZE\tCOMMENT")
			for _, h := range entries {
				id := h.ID
				if id != "<missing>" {
					id = shortID(id, noTrunc)
				}
				by := h.CreatedBy
				if !noTrunc && len(by) > 45 {
					by = by[:44] + "…"
				}
				size := humanSize(h.Size)
				if !human {
					size = fmt.Sprint(h.Size)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", id, humanAgo(time.Unix(h.Created, 0)), by, size, h.Comment)
			}
			return w.Flush()
		}),
	}
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "don't truncate output")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only show image IDs")
	cmd.Flags().BoolVarP(&human, "human", "H", true, "print sizes and dates in human readable format")
	cmd.Flags().StringVar(&format, "format", "", "format with a Go template")
	return cmd
}

func newImagePruneCommand() *cobra.Command {
	var all, force bool
	var filters []string
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused images",
		Args:  cobra.NoArgs,
		RunE: withImages(func(cmd *cobra.Command, s *image.Service, args []string) error {
			f, err := parsePruneFilter(filters, "until", "label", "label!")
			if err != nil {
				return err
			}
			if !force && term.IsTerminal(int(os.Stdin.Fd())) {
				what := "all dangling images"
				if all {
					what = "all images without at least one container associated to them"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "WARNING! This will remove %s.\nAre you sure you want to continue? [y/N] ", what)
				var answer string
				fmt.Fscanln(os.Stdin, &answer)
				if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
					return nil
				}
			}
			ctx, stop := interruptible()
			defer stop()
			keep, err := f.imageKeep(s, imageInUse())
			if err != nil {
				return err
			}
			rep, err := s.Prune(ctx, all, keep)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			printList(out, "Deleted Images:", imagePruneLines(rep))
			fmt.Fprintf(out, "Total reclaimed space: %s\n", humanSize(rep.SpaceReclaimed))
			return nil
		}),
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove all unused images, not just dangling ones")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not prompt for confirmation")
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "provide filter values (until=24h, label=key[=value], label!=key[=value])")
	return cmd
}

// imagePruneLines are an image prune's "untagged:" and "deleted:" lines.
func imagePruneLines(rep image.PruneReport) []string {
	var lines []string
	for _, it := range rep.Items {
		if it.Untagged != "" {
			lines = append(lines, "untagged: "+image.Familiar(it.Untagged))
		}
		if it.Deleted != "" {
			lines = append(lines, "deleted: "+it.Deleted)
		}
	}
	return lines
}

func newSystemDfCommand() *cobra.Command {
	var format string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "df",
		Short: "Show berth disk usage",
		Args:  cobra.NoArgs,
		RunE: withImages(func(cmd *cobra.Command, s *image.Service, args []string) error {
			img, err := imageDf(s)
			if err != nil {
				return err
			}
			e, err := containerEngine()
			if err != nil {
				return err
			}
			ctrs, err := containerDf(e)
			if err != nil {
				return err
			}
			vs, err := volumeStore()
			if err != nil {
				return err
			}
			vols, err := volumeDf(vs)
			if err != nil {
				return err
			}
			// berth has no builder yet, so no build cache: a true zero.
			rows := []dfRow{img, ctrs, vols, {"Build Cache", "0", "0", "0B", "0B"}}
			if format != "" {
				return formatRows(cmd, format, rows)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 8, 3, ' ', 0)
			fmt.Fprintln(w, "TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE")
			for _, r := range rows {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.Type, r.TotalCount, r.Active, r.Size, r.Reclaimable)
			}
			return w.Flush()
		}),
	}
	cmd.Flags().StringVar(&format, "format", "", "format with a Go template")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "accepted for Docker compatibility")
	return cmd
}

func newImportCommand() *cobra.Command {
	var message string
	var changes []string
	cmd := &cobra.Command{
		Use:   "import [OPTIONS] file|- [REPOSITORY[:TAG]]",
		Short: "Import the contents from a tarball to create a filesystem image",
		Args:  cobra.RangeArgs(1, 2),
		RunE: withImages(func(cmd *cobra.Command, s *image.Service, args []string) error {
			opts := image.ImportOpts{Message: message}
			if err := applyChanges(&opts, changes); err != nil {
				return err
			}
			var r io.Reader = os.Stdin
			var total int64
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return fmt.Errorf("import: %w", err)
				}
				defer f.Close()
				if fi, err := f.Stat(); err == nil {
					total = fi.Size()
				}
				r = f
			}
			pr := newProgress(r, total, "Importing", os.Stderr)
			r = pr
			ref := ""
			if len(args) == 2 {
				ref = args[1]
			}
			ctx, stop := interruptible()
			defer stop()
			img, err := s.Import(ctx, r, ref, opts)
			pr.done()
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), img.ID)
			return nil
		}),
	}
	cmd.Flags().StringVarP(&message, "message", "m", "", "set a commit message for the imported image")
	cmd.Flags().StringArrayVarP(&changes, "change", "c", nil, "apply a Dockerfile instruction to the image (CMD, ENTRYPOINT, ENV, WORKDIR, LABEL, USER, EXPOSE)")
	return cmd
}

// applyChanges handles the simple Dockerfile instructions of --change.
func applyChanges(o *image.ImportOpts, changes []string) error {
	for _, c := range changes {
		instr, rest, _ := strings.Cut(strings.TrimSpace(c), " ")
		rest = strings.TrimSpace(rest)
		list := func() []string {
			if strings.HasPrefix(rest, "[") {
				var l []string
				if err := jsonUnmarshal(rest, &l); err == nil {
					return l
				}
			}
			return []string{"/bin/sh", "-c", rest}
		}
		switch strings.ToUpper(instr) {
		case "CMD":
			o.Config.Cmd = list()
		case "ENTRYPOINT":
			o.Config.Entrypoint = list()
		case "ENV":
			k, v, ok := strings.Cut(rest, "=")
			if !ok {
				k, v, _ = strings.Cut(rest, " ")
			}
			o.Config.Env = append(o.Config.Env, strings.TrimSpace(k)+"="+strings.TrimSpace(v))
		case "WORKDIR":
			o.Config.WorkingDir = rest
		case "USER":
			o.Config.User = rest
		case "LABEL":
			k, v, _ := strings.Cut(rest, "=")
			if o.Config.Labels == nil {
				o.Config.Labels = map[string]string{}
			}
			o.Config.Labels[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
		case "EXPOSE":
			if o.Config.ExposedPorts == nil {
				o.Config.ExposedPorts = map[string]struct{}{}
			}
			for _, p := range strings.Fields(rest) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				o.Config.ExposedPorts[p] = struct{}{}
			}
		case "VOLUME":
			if o.Config.Volumes == nil {
				o.Config.Volumes = map[string]struct{}{}
			}
			vols := strings.Fields(rest)
			if strings.HasPrefix(rest, "[") {
				vols = list()
			}
			for _, v := range vols {
				o.Config.Volumes[v] = struct{}{}
			}
		case "STOPSIGNAL":
			o.Config.StopSignal = rest
		default:
			return fmt.Errorf("--change %q: berth supports CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME and STOPSIGNAL: %w", c, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func newSaveCommand() *cobra.Command {
	var output, format string
	cmd := &cobra.Command{
		Use:   "save [OPTIONS] IMAGE [IMAGE...]",
		Short: "Save one or more images to a tar archive (streamed to STDOUT by default)",
		Args:  cobra.MinimumNArgs(1),
		RunE: withImages(func(cmd *cobra.Command, s *image.Service, args []string) error {
			ctx, stop := interruptible()
			defer stop()
			if output == "" {
				if term.IsTerminal(int(os.Stdout.Fd())) {
					return usageErr("cowardly refusing to save to a terminal. Use the -o flag or redirect")
				}
				return s.Save(ctx, os.Stdout, args, format)
			}
			tmp := output + ".berth-tmp"
			f, err := os.Create(tmp)
			if err != nil {
				return fmt.Errorf("save: %w", err)
			}
			if err := s.Save(ctx, f, args, format); err != nil {
				f.Close()
				os.Remove(tmp)
				return err
			}
			if err := f.Close(); err != nil {
				os.Remove(tmp)
				return err
			}
			return os.Rename(tmp, output)
		}),
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to a file, instead of STDOUT")
	cmd.Flags().StringVar(&format, "format", "docker-archive", "docker-archive or oci-archive")
	return cmd
}

func newLoadCommand() *cobra.Command {
	var input string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "load [OPTIONS]",
		Short: "Load an image from a tar archive or STDIN",
		Args:  cobra.NoArgs,
		RunE: withImages(func(cmd *cobra.Command, s *image.Service, args []string) error {
			var r io.Reader = os.Stdin
			var total int64
			if input != "" {
				f, err := os.Open(input)
				if err != nil {
					return fmt.Errorf("load: %w", err)
				}
				defer f.Close()
				if fi, err := f.Stat(); err == nil {
					total = fi.Size()
				}
				r = f
			} else if term.IsTerminal(int(os.Stdin.Fd())) {
				return usageErr("requested load from stdin, but stdin is empty: use -i FILE or redirect")
			}
			var bar *os.File
			if !quiet {
				bar = os.Stderr
			}
			pr := newProgress(r, total, "Loading", bar)
			r = pr
			// Load prints Docker's "Loaded image: ..." lines itself;
			// they follow the finished progress bar.
			var loaded bytes.Buffer
			ctx, stop := interruptible()
			defer stop()
			_, err := s.Load(ctx, r, &loaded)
			pr.done()
			if !quiet {
				_, _ = loaded.WriteTo(cmd.OutOrStdout())
			}
			return err
		}),
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "read from tar archive file, instead of STDIN")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "suppress the load output")
	return cmd
}
