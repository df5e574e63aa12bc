package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/network"
	"github.com/berth-dev/berth/internal/volume"
)

// newSystemPruneCommand is `docker system prune`: stopped containers,
// unused networks (and the default bridge's kernel side when nothing is
// on it), dangling images (every unused one with -a) and, with --volumes,
// unused anonymous volumes, in Docker's order and output; --filter takes
// Docker's prune keys (until, label, label!) for each kind. berth has no
// build cache, so the warning does not promise to clear one.
func newSystemPruneCommand() *cobra.Command {
	var all, force, volumes bool
	var filters []string
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused data",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := parsePruneFilter(filters, "until", "label", "label!")
			if err != nil {
				return err
			}
			if volumes && !f.until.IsZero() {
				return usageErr("the until filter is not supported with --volumes (volumes have no creation filter in Docker's prune either)")
			}
			netFilter, err := network.ParseFilter(filters, "until", "label", "label!")
			if err != nil {
				return err
			}
			volFilter, err := volume.ParseFilter(withoutUntil(filters), "label", "label!")
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if !force {
				images := "all dangling images"
				if all {
					images = "all images without at least one container associated to them"
				}
				lines := []string{"all stopped containers", "all networks not used by at least one container"}
				if volumes {
					lines = append(lines, "all anonymous volumes not used by at least one container")
				}
				lines = append(lines, images)
				if !confirm(cmd, "WARNING! This will remove:\n  - "+strings.Join(lines, "\n  - ")+"\n\nAre you sure you want to continue? [y/N] ") {
					return nil
				}
			}
			e, err := containerEngine()
			if err != nil {
				return err
			}
			var reclaimed int64
			ids, n, err := pruneContainers(e, func(c *container.Container) bool { return f.match(c.Created, c.Config.Labels) })
			if err != nil {
				return err
			}
			reclaimed += n
			printList(out, "Deleted Containers:", ids)

			ctx, stop := interruptible()
			defer stop()
			names, err := e.Networks.Prune(ctx, netFilter)
			if nerr := notifyDNS(); err == nil {
				err = nerr
			}
			printList(out, "Deleted Networks:", names)
			if err != nil {
				return err
			}

			if volumes {
				s, err := volumeStore()
				if err != nil {
					return err
				}
				rep, err := s.Prune(inUse(), false, volFilter)
				if err != nil {
					return err
				}
				reclaimed += rep.SpaceReclaimed
				printList(out, "Deleted Volumes:", rep.Names)
			}

			keep, err := f.imageKeep(e.Images, imageInUse())
			if err != nil {
				return err
			}
			rep, err := e.Images.Prune(ctx, all, keep)
			if err != nil {
				return err
			}
			reclaimed += rep.SpaceReclaimed
			printList(out, "Deleted Images:", imagePruneLines(rep))
			fmt.Fprintf(out, "Total reclaimed space: %s\n", humanSize(reclaimed))
			return nil
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove all unused images, not just dangling ones")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not prompt for confirmation")
	cmd.Flags().BoolVar(&volumes, "volumes", false, "prune anonymous volumes")
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "provide filter values (until=24h, label=key[=value], label!=key[=value])")
	return cmd
}

// withoutUntil drops until= from filter values (volumes take labels only).
func withoutUntil(filters []string) []string {
	var out []string
	for _, kv := range filters {
		if !strings.HasPrefix(kv, "until=") {
			out = append(out, kv)
		}
	}
	return out
}

// dfRow is one line of `system df`.
type dfRow struct{ Type, TotalCount, Active, Size, Reclaimable string }

// reclaimable is Docker's RECLAIMABLE cell: the size and its share.
func reclaimable(part, whole int64) string {
	pct := int64(0)
	if whole > 0 {
		pct = part * 100 / whole
	}
	return fmt.Sprintf("%s (%d%%)", humanSize(part), pct)
}

// containerDf is the Containers row: every container, the running ones,
// their writable layers' size, and what removing the stopped ones frees.
func containerDf(e *container.Engine) (dfRow, error) {
	cs, err := e.List()
	if err != nil {
		return dfRow{}, err
	}
	var active int
	var size, free int64
	for _, c := range cs {
		c = e.RefreshRecord(c)
		rw, _ := e.SizeRw(c.ID)
		size += rw
		if c.State.Running {
			active++
		} else {
			free += rw
		}
	}
	return dfRow{"Containers", fmt.Sprint(len(cs)), fmt.Sprint(active), humanSize(size), reclaimable(free, size)}, nil
}

// volumeDf is the Local Volumes row: volumes, those in use, their data's
// size, and what the unused ones hold.
func volumeDf(s *volume.Store) (dfRow, error) {
	vs, err := s.List()
	if err != nil {
		return dfRow{}, err
	}
	used := inUse()
	var active int
	var size, free int64
	for _, v := range vs {
		n, _ := s.Size(v.Name)
		size += n
		if len(used(v.Name)) > 0 {
			active++
		} else {
			free += n
		}
	}
	return dfRow{"Local Volumes", fmt.Sprint(len(vs)), fmt.Sprint(active), humanSize(size), reclaimable(free, size)}, nil
}

// imageDf is the Images row.
func imageDf(s *image.Service) (dfRow, error) {
	du, err := s.DiskUsage(imageInUse())
	if err != nil {
		return dfRow{}, err
	}
	return dfRow{"Images", fmt.Sprint(du.Images), fmt.Sprint(du.Active), humanSize(du.Size), reclaimable(du.Reclaimable, du.Size)}, nil
}
